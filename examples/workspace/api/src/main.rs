//! The api service of the workspace example: says where its static files are.

fn main() {
    let dir = std::env::var("API_STATIC").unwrap_or_else(|_| "static".into());
    let files = std::fs::read_dir(&dir).map(|d| d.count()).unwrap_or(0);
    println!("api {}: {files} static files in {dir}", env!("CARGO_PKG_VERSION"));
}
