//! Runs on `scratch` with only what the spec copied out of the `system` stage: it reads the CA
//! bundle and the zoneinfo at run time, and checks the removed paths are gone.

use std::path::Path;

fn main() {
    let bundle = std::fs::read_to_string("/etc/ssl/certs/ca-certificates.crt")
        .expect("the CA bundle copied from the system stage");
    let certs = bundle.matches("-----BEGIN CERTIFICATE-----").count();
    println!("CA bundle: {certs} certificates");
    let utc = std::fs::read("/usr/share/zoneinfo/UTC").expect("zoneinfo copied from the system stage");
    println!("zoneinfo UTC: {} bytes, TZif: {}", utc.len(), utc.starts_with(b"TZif"));
    for gone in ["/usr/share/zoneinfo/Europe", "/usr/share/doc", "/bin/tool"] {
        println!("{gone}: {}", if Path::new(gone).exists() { "present" } else { "absent" });
    }
}
