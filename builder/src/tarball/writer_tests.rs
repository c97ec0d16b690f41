use std::io::Cursor;

use super::*;

const BLOCK_USIZE: usize = BLOCK as usize;

#[test]
fn pax_record_length_counts_itself() {
    for (key, value_len) in [
        ("path", 1usize),
        ("path", 90),
        ("path", 93),
        ("path", 994),
        ("linkpath", 5000),
    ] {
        let mut out = Vec::new();
        pax_record(&mut out, key, &vec![b'a'; value_len]);
        let text = String::from_utf8(out.clone()).unwrap();
        let (len, _) = text.split_once(' ').unwrap();
        assert_eq!(
            len.parse::<usize>().unwrap(),
            out.len(),
            "{key} {value_len}"
        );
    }
}

#[test]
fn header_fields_and_checksum() {
    let h = Header {
        name: b"usr/bin/app",
        mode: 0o755,
        uid: 1000,
        gid: 1000,
        size: 5,
        mtime: 1_700_000_000,
        typeflag: TYPE_FILE,
        link: b"",
        device: (0, 0),
    };
    let b = ustar(&h, HeaderFormat::Pax).unwrap();
    let parsed = tar::Header::from_byte_slice(&b);
    assert_eq!(parsed.path_bytes().as_ref(), b"usr/bin/app");
    assert_eq!(parsed.mode().unwrap(), 0o755);
    assert_eq!(parsed.uid().unwrap(), 1000);
    assert_eq!(parsed.size().unwrap(), 5);
    assert_eq!(parsed.mtime().unwrap(), 1_700_000_000);
    assert_eq!(parsed.cksum().unwrap(), {
        let mut c = b;
        c[148..156].fill(b' ');
        c.iter().map(|&x| u32::from(x)).sum::<u32>()
    });
    assert!(parsed.as_ustar().is_some());
    assert_eq!(&b[265..329], &[0u8; 64][..], "uname and gname are empty");
    assert_eq!(b[155], b' ', "checksum: six digits, NUL, space");
    assert_eq!(b[154], 0);
}

#[test]
fn values_too_large_for_ustar_go_to_pax_records_in_fixed_order() {
    let mut w = TarWriter::new(Vec::new(), 0, HeaderFormat::Pax);
    let name = format!("dir/{}", "n".repeat(120));
    let h = Header {
        name: name.as_bytes(),
        mode: 0o644,
        uid: 1 << 22,
        gid: 1 << 21,
        size: 8 << 30, // 8 GiB: one more than 11 octal digits hold
        mtime: 1 << 34,
        typeflag: TYPE_FILE,
        link: b"",
        device: (0, 0),
    };
    w.write_header(&h).unwrap();
    let out = w.out;
    assert_eq!(out.len() % BLOCK_USIZE, 0);
    let pax = tar::Header::from_byte_slice(&out[..BLOCK_USIZE]);
    assert_eq!(pax.entry_type(), tar::EntryType::XHeader);
    assert_eq!(
        pax.path_bytes().as_ref(),
        format!("PaxHeaders/{}", "n".repeat(89)).as_bytes()
    );
    let len = pax.size().unwrap() as usize;
    let records = std::str::from_utf8(&out[BLOCK_USIZE..BLOCK_USIZE + len]).unwrap();
    let keys: Vec<&str> = records
        .lines()
        .map(|l| l.split_once(' ').unwrap().1.split_once('=').unwrap().0)
        .collect();
    assert_eq!(keys, ["gid", "mtime", "path", "size", "uid"]);
    assert!(records.contains(&format!(" size={}\n", 8u64 << 30)));
    assert!(records.contains(&format!(" path={name}\n")));
    let main = tar::Header::from_byte_slice(&out[out.len() - BLOCK_USIZE..]);
    assert_eq!(
        (
            main.size().unwrap(),
            main.uid().unwrap(),
            main.mtime().unwrap()
        ),
        (0, 0, 0)
    );
    assert_eq!(
        main.path_bytes().len(),
        100,
        "the ustar name holds a truncated name"
    );
}

#[test]
fn truncation_keeps_utf8_whole() {
    let s = "é".repeat(60); // 120 bytes
    let t = truncate_utf8(s.as_bytes(), 100);
    assert_eq!(t.len(), 100);
    assert!(std::str::from_utf8(t).is_ok());
    let t = truncate_utf8(s.as_bytes(), 99);
    assert_eq!(t.len(), 98);
    assert_eq!(padding(0), 0);
    assert_eq!(padding(1), 511);
    assert_eq!(padding(512), 0);
}

/// The header the archive writer made with the tar crate before the writers were one: the
/// [`HeaderFormat::Ustar`] bytes must stay exactly these.
fn tar_crate_header(name: &str, mode: u32, size: u64, mtime: u64, dir: bool) -> [u8; 512] {
    let mut header = tar::Header::new_ustar();
    let bytes = name.as_bytes();
    let ustar = header.as_ustar_mut().unwrap();
    if bytes.len() <= 100 {
        ustar.name[..bytes.len()].copy_from_slice(bytes);
    } else {
        let split = bytes
            .iter()
            .enumerate()
            .filter(|&(i, &b)| b == b'/' && i <= 155 && bytes.len() - i - 1 <= 100)
            .map(|(i, _)| i)
            .next_back()
            .unwrap();
        ustar.prefix[..split].copy_from_slice(&bytes[..split]);
        ustar.name[..bytes.len() - split - 1].copy_from_slice(&bytes[split + 1..]);
    }
    header.set_mode(mode);
    header.set_uid(0);
    header.set_gid(0);
    header.set_size(size);
    header.set_mtime(mtime);
    header.set_entry_type(if dir {
        tar::EntryType::Directory
    } else {
        tar::EntryType::Regular
    });
    header.set_device_major(0).unwrap();
    header.set_device_minor(0).unwrap();
    header.set_cksum();
    *header.as_bytes()
}

#[test]
fn ustar_headers_are_the_bytes_the_archive_writer_always_wrote() {
    let long_dir = format!("{}/{}", "d".repeat(120), "f".repeat(90));
    let cases: Vec<(String, u32, u64, u64, bool)> = vec![
        ("oci-layout".into(), 0o644, 30, 0, false),
        ("blobs".into(), 0o755, 0, 1_700_000_000, true),
        (
            format!("blobs/sha256/{}", "a".repeat(64)),
            0o644,
            1234,
            5,
            false,
        ),
        (long_dir.clone(), 0o644, 1, 0, false),
        (long_dir, 0o755, 0, 0, true),
        ("big".into(), 0o644, 9 << 30, 1 << 34, false),
    ];
    for (name, mode, size, mtime, dir) in cases {
        let mut w = TarWriter::new(Vec::new(), mtime, HeaderFormat::Ustar);
        let kind = if dir {
            EntryKind::Dir
        } else {
            EntryKind::File { size }
        };
        w.header(&EntryHeader {
            path: &name,
            kind,
            mode,
            uid: 0,
            gid: 0,
        })
        .unwrap();
        let expected_name = if dir {
            format!("{name}/")
        } else {
            name.clone()
        };
        let expected = tar_crate_header(&expected_name, mode, size, mtime, dir);
        assert_eq!(w.out, expected.to_vec(), "{name}");
    }
}

#[test]
fn a_name_that_cannot_be_split_is_refused_by_the_ustar_format() {
    let mut w = TarWriter::new(Vec::new(), 0, HeaderFormat::Ustar);
    let e = w.bytes(&"x".repeat(101), 0o644, b"").unwrap_err();
    assert!(e.to_string().contains("too long for a ustar header"), "{e}");
}

#[test]
fn a_streamed_file_gets_its_size_written_back() {
    let mut w = TarWriter::new(Cursor::new(Vec::new()), 7, HeaderFormat::Ustar);
    let mut seen = 0usize;
    let size = w
        .file_streamed("layer.tar", 0o644, &mut &b"hello"[..], &mut |b| {
            seen += b.len()
        })
        .unwrap();
    assert_eq!((size, seen), (5, 5));
    let out = w.finish().unwrap().into_inner();
    assert_eq!(out.len(), 4 * BLOCK_USIZE);
    assert_eq!(
        out[..BLOCK_USIZE],
        tar_crate_header("layer.tar", 0o644, 5, 7, false)
    );
    assert_eq!(&out[BLOCK_USIZE..BLOCK_USIZE + 5], b"hello");
}

#[test]
fn a_short_source_is_padded_with_zeros_to_its_size() {
    let mut w = TarWriter::new(Vec::new(), 0, HeaderFormat::Ustar);
    w.header(&EntryHeader {
        path: "f",
        kind: EntryKind::File { size: 10 },
        mode: 0o644,
        uid: 0,
        gid: 0,
    })
    .unwrap();
    let copied = w.copy_content(&mut &b"abc"[..], 10, &mut |_| {}).unwrap();
    assert_eq!(copied, 3);
    w.end_content(10, copied).unwrap();
    assert_eq!(w.out.len(), 2 * BLOCK_USIZE);
    assert_eq!(&w.out[BLOCK_USIZE..BLOCK_USIZE + 10], b"abc\0\0\0\0\0\0\0");
}
