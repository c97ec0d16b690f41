//! The smallest useful image: a static binary on `scratch` that greets and shows what it sees.

fn main() {
    let who = std::env::var("GREETING_TARGET").unwrap_or_else(|_| "world".to_string());
    println!("Hello, {who}! (from a cargo-image built image)");
    if let Ok(motd) = std::fs::read_to_string("/etc/motd") {
        print!("{motd}");
    }
}
