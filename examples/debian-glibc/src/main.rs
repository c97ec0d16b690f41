//! A glibc program that needs what three Debian packages put in its image: `libc6` (the
//! dynamic loader and the C library it links to), `tzdata` (the zones glibc's `localtime_r`
//! reads from `/usr/share/zoneinfo`) and `ca-certificates` (the CA bundle TLS clients read).
//!
//! It prints one instant in UTC and in each zone named on its command line, then how many
//! certificates the CA bundle holds. A missing zone or bundle is an error (exit code 1): glibc
//! would silently fall back to UTC, and a TLS client would fail at its first connection.

use std::ffi::{c_char, c_int, c_long, CStr};

/// The instant shown: 2023-11-14 22:13:20 UTC.
const INSTANT: i64 = 1_700_000_000;
/// Where glibc reads zones (`TZ=Area/City`).
const ZONEINFO: &str = "/usr/share/zoneinfo";
/// Where Debian's `ca-certificates` bundle is, and where OpenSSL, Go and rustls look first.
const CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// glibc's `struct tm` on 64-bit Linux.
#[repr(C)]
struct Tm {
    tm_sec: c_int,
    tm_min: c_int,
    tm_hour: c_int,
    tm_mday: c_int,
    tm_mon: c_int,
    tm_year: c_int,
    tm_wday: c_int,
    tm_yday: c_int,
    tm_isdst: c_int,
    tm_gmtoff: c_long,
    tm_zone: *const c_char,
}

extern "C" {
    fn tzset();
    fn localtime_r(time: *const i64, result: *mut Tm) -> *mut Tm;
}

/// `INSTANT` as glibc shows it in the zone `TZ` names: `2023-11-15 07:13:20 JST (+09:00)`.
fn local_time(zone: &str) -> String {
    std::env::set_var("TZ", zone);
    let mut tm = std::mem::MaybeUninit::<Tm>::zeroed();
    // SAFETY: tzset and localtime_r are glibc's; `tm` is a valid `struct tm` to fill, and the
    // program has one thread, so nothing changes TZ while glibc reads it.
    let tm = unsafe {
        tzset();
        assert!(!localtime_r(&INSTANT, tm.as_mut_ptr()).is_null());
        tm.assume_init()
    };
    // SAFETY: glibc points tm_zone at a NUL-terminated abbreviation it keeps.
    let abbreviation = unsafe { CStr::from_ptr(tm.tm_zone) }.to_string_lossy();
    let offset = tm.tm_gmtoff / 60;
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02} {abbreviation} ({}{:02}:{:02})",
        tm.tm_year + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec,
        if offset < 0 { '-' } else { '+' },
        offset.abs() / 60,
        offset.abs() % 60,
    )
}

fn main() {
    let mut ok = true;
    println!("{INSTANT} is {}", local_time("UTC0"));
    for zone in std::env::args().skip(1) {
        if std::path::Path::new(ZONEINFO).join(&zone).is_file() {
            println!("  in {zone}: {}", local_time(&zone));
        } else {
            println!("  in {zone}: no such zone in {ZONEINFO}");
            ok = false;
        }
    }
    match std::fs::read_to_string(CA_BUNDLE) {
        Ok(pem) => {
            let count = pem.matches("-----BEGIN CERTIFICATE-----").count();
            println!("{CA_BUNDLE}: {count} certificates");
            ok &= count > 0;
        }
        Err(e) => {
            println!("{CA_BUNDLE}: {e}");
            ok = false;
        }
    }
    std::process::exit(if ok { 0 } else { 1 });
}
