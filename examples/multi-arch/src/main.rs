//! One program, two architectures: says which one it was built for, then prints the shared
//! assets and the file only its platform's image has.

fn main() {
    println!("Hello from {}!", std::env::consts::ARCH);
    for file in ["/usr/share/multi-arch/greeting.txt", "/etc/platform"] {
        if let Ok(text) = std::fs::read_to_string(file) {
            print!("{text}");
        }
    }
}
