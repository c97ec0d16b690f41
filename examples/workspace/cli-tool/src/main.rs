//! The zero-config crate of the workspace example: prints the message of the day that the
//! workspace's shared layer puts in every image (in capitals with the `shout` feature).

fn main() {
    let motd = std::fs::read_to_string("/etc/motd").unwrap_or_default();
    let line = format!("cli-tool {}: {}", env!("CARGO_PKG_VERSION"), motd.trim());
    if cfg!(feature = "shout") {
        println!("{}", line.to_uppercase());
    } else {
        println!("{line}");
    }
}
