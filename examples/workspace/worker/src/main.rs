//! The worker of the workspace example: prints the queue it would serve.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let queue = match args.as_slice() {
        [flag, name] if flag == "--queue" => name.clone(),
        _ => "default".to_owned(),
    };
    println!("worker {}: serving queue {queue}", env!("CARGO_PKG_VERSION"));
}
