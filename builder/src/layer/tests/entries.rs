//! Layer trees from sources: ordering, modes and owners, long names, host trees, include/exclude, conflicts.

use super::*;

// ---------------------------------------------------------------------------------------------
// Ordering, modes, ownership

#[test]
fn entries_are_in_byte_order_with_parents_first() {
    let c = Ctx::new();
    c.file("src/a/b", b"1", 0o644);
    c.file("src/a-b", b"2", 0o644);
    c.file("src/a.c", b"3", 0o644);
    c.file("src/B", b"4", 0o644);
    c.file("src/a/b-c/d", b"5", 0o644);
    let tree = c.build(vec![add("app", path("src"))]).unwrap();
    assert_eq!(
        names(&tar_of(&tree)),
        // `a` < `a-b` < `a.c` < `a/b`: byte order of the path, so a directory precedes its
        // siblings that extend its name, and every parent precedes its children.
        [
            "app/",
            "app/B",
            "app/a/",
            "app/a-b",
            "app/a.c",
            "app/a/b",
            "app/a/b-c/",
            "app/a/b-c/d"
        ]
    );
}

#[test]
fn host_modes_are_normalised_whatever_the_host_bits() {
    let c = Ctx::new();
    c.file("t/rw-only", b"x", 0o600);
    c.file("t/group", b"x", 0o664);
    c.file("t/readonly", b"x", 0o444);
    c.file("t/user-exec", b"x", 0o700);
    c.file("t/other-exec", b"x", 0o601);
    c.file("t/setuid-host", b"x", 0o4755);
    c.dir("t/private", 0o700);
    c.dir("t/sticky", 0o1777);
    c.file("t/private/f", b"x", 0o640);
    let tree = c.build(vec![add("", path("t"))]).unwrap();
    let ms = members(&tar_of(&tree));
    let mode = |p: &str| member(&ms, p).mode;
    assert_eq!(mode("rw-only"), 0o644);
    assert_eq!(mode("group"), 0o644);
    assert_eq!(mode("readonly"), 0o644);
    assert_eq!(mode("user-exec"), 0o755);
    assert_eq!(mode("other-exec"), 0o755);
    assert_eq!(mode("setuid-host"), 0o755, "host setuid bits are dropped");
    assert_eq!(mode("private/"), 0o755);
    assert_eq!(mode("sticky/"), 0o755);
    assert_eq!(mode("private/f"), 0o644);
    for m in &ms {
        assert_eq!((m.uid, m.gid, m.mtime), (0, 0, 1_700_000_000), "{}", m.path);
    }
}

#[test]
fn spec_modes_and_owner_apply_including_special_bits() {
    let c = Ctx::new();
    c.file("t/f", b"x", 0o600);
    c.dir("t/d", 0o700);
    let mut e = add("opt/t", path("t"));
    e.mode = Some(0o4750);
    e.dir_mode = Some(0o1770);
    e.owner = Owner {
        uid: 1000,
        gid: 2000,
    };
    let mut dir = add("tmp", Source::Dir);
    dir.dir_mode = Some(0o1777);
    let tree = c.build(vec![e, dir]).unwrap();
    let ms = members(&tar_of(&tree));
    assert_eq!(member(&ms, "opt/").mode, 0o755, "implicit parent");
    assert_eq!((member(&ms, "opt/").uid, member(&ms, "opt/").gid), (0, 0));
    let t = member(&ms, "opt/t/");
    assert_eq!((t.mode, t.uid, t.gid), (0o1770, 1000, 2000));
    let f = member(&ms, "opt/t/f");
    assert_eq!((f.mode, f.uid, f.gid), (0o4750, 1000, 2000));
    assert_eq!(member(&ms, "opt/t/d/").mode, 0o1770);
    assert_eq!(member(&ms, "tmp/").mode, 0o1777);
}

#[test]
fn inline_dir_symlink_and_cargo_sources() {
    let mut c = Ctx::new();
    let bin = c.file("target/release/hello", b"\x7fELF", 0o755);
    let cargo = CargoSource {
        package: None,
        bin: Some("hello".into()),
        profile: "release".into(),
        features: vec![],
        all_features: false,
        no_default_features: false,
        target: "x86_64-unknown-linux-musl".into(),
        target_pinned: false,
        linker: None,
        cc: None,
        strip: Default::default(),
        builder: Default::default(),
    };
    c.cargo.insert(cargo.clone(), bin);
    let mut content = add("etc/app.toml", Source::Content(b"port = 80\n".to_vec()));
    content.owner = Owner { uid: 7, gid: 8 };
    let tree = c
        .build(vec![
            add("usr/local/bin/", Source::Cargo(cargo.clone())),
            content,
            add("var/empty", Source::Dir),
            add("usr/bin/hi", Source::Symlink("../local/bin/hello".into())),
        ])
        .unwrap();
    let ms = members(&tar_of(&tree));
    let b = member(&ms, "usr/local/bin/hello");
    assert_eq!(
        (b.kind, b.mode, b.data.as_slice()),
        ('0', 0o755, &b"\x7fELF"[..])
    );
    let f = member(&ms, "etc/app.toml");
    assert_eq!(
        (f.mode, f.uid, f.gid, f.data.as_slice()),
        (0o644, 7, 8, &b"port = 80\n"[..])
    );
    assert_eq!(member(&ms, "var/empty/").kind, '5');
    let l = member(&ms, "usr/bin/hi");
    assert_eq!(
        (l.kind, l.mode, l.link.as_deref()),
        ('2', 0o777, Some("../local/bin/hello"))
    );

    // A cargo source the orchestrator did not build.
    let mut other = cargo;
    other.bin = Some("other".into());
    let err = c
        .build(vec![add("bin/", Source::Cargo(other))])
        .unwrap_err();
    assert!(matches!(err, Error::FindCargoOutput { .. }), "{err}");
    assert!(err.to_string().contains("`other`"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// Long names, PAX, GNU tar

#[test]
fn long_names_and_targets_use_pax_and_read_back_everywhere() {
    let c = Ctx::new();
    let seg = "d".repeat(60);
    let long_dir = format!("{seg}/{seg}"); // 121 bytes
    let very_long = format!("{long_dir}/{seg}/{seg}/{seg}/{}", "f".repeat(70)); // > 255 bytes
    let target = "t".repeat(150);
    let mut big_uid = add("owned", Source::Content(b"x".to_vec()));
    big_uid.owner = Owner {
        uid: 3_000_000,
        gid: 5,
    };
    let tree = c
        .build(vec![
            add(&very_long, Source::Content(b"deep".to_vec())),
            add("x/link", Source::Symlink(target.clone())),
            add("caf\u{e9}/\u{fc}ber", Source::Content(b"utf8".to_vec())),
            big_uid,
        ])
        .unwrap();
    assert!(very_long.len() > 255);
    let tar = tar_of(&tree);
    let ms = members(&tar);
    assert_eq!(member(&ms, &very_long).data, b"deep");
    assert_eq!(member(&ms, "x/link").link.as_deref(), Some(target.as_str()));
    assert_eq!(member(&ms, "owned").uid, 3_000_000);
    let expected: Vec<String> = tree
        .iter()
        .map(|(p, e)| {
            if matches!(e.kind, EntryKind::Dir) {
                format!("{p}/")
            } else {
                p.to_owned()
            }
        })
        .collect();
    assert_eq!(names(&tar), expected);

    // GNU tar lists the same names, numeric owners, modes and the link target.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("layer.tar");
    fs::write(&file, &tar).unwrap();
    let listing = String::from_utf8(run(Command::new("tar")
        .arg("--numeric-owner")
        .arg("-tvf")
        .arg(&file)))
    .unwrap();
    let gnu: Vec<&str> = listing.lines().collect();
    assert_eq!(gnu.len(), expected.len(), "{listing}");
    for (line, name) in gnu.iter().zip(&expected) {
        assert!(
            line.contains(&format!(" {name}")),
            "GNU tar line {line:?} should name {name:?}"
        );
        assert!(!line.contains("PaxHeaders"), "{line}");
    }
    let link_line = gnu.iter().find(|l| l.contains("x/link")).unwrap();
    assert!(link_line.starts_with("lrwxrwxrwx 0/0"), "{link_line}");
    assert!(
        link_line.ends_with(&format!("x/link -> {target}")),
        "{link_line}"
    );
    assert!(
        gnu.iter()
            .any(|l| l.starts_with("-rw-r--r-- 3000000/5") && l.ends_with(" owned")),
        "{listing}"
    );
    let names_only = String::from_utf8(run(Command::new("tar").arg("-tf").arg(&file))).unwrap();
    assert_eq!(names_only.lines().collect::<Vec<_>>(), expected);
}

// ---------------------------------------------------------------------------------------------
// Host trees: links, special files, the context boundary

#[test]
fn hard_links_become_two_regular_files() {
    let c = Ctx::new();
    let a = c.file("t/a", b"same inode", 0o755);
    fs::hard_link(&a, c.root.join("t/b")).unwrap();
    let tree = c.build(vec![add("", path("t"))]).unwrap();
    let ms = members(&tar_of(&tree));
    for p in ["a", "b"] {
        let m = member(&ms, p);
        assert_eq!(
            (m.kind, m.mode, m.data.as_slice()),
            ('0', 0o755, &b"same inode"[..]),
            "{p}"
        );
    }
}

#[test]
fn symlinks_are_stored_not_followed() {
    let c = Ctx::new();
    c.file("t/sub/f", b"f", 0o644);
    symlink("sub", c.root.join("t/dirlink")).unwrap();
    symlink("../../../../etc/passwd", c.root.join("t/escaping")).unwrap();
    symlink("/nonexistent", c.root.join("t/dangling")).unwrap();
    let tree = c.build(vec![add("", path("t"))]).unwrap();
    let ms = members(&tar_of(&tree));
    assert_eq!(
        names(&tar_of(&tree)),
        ["dangling", "dirlink", "escaping", "sub/", "sub/f"]
    );
    assert_eq!(member(&ms, "dirlink").link.as_deref(), Some("sub"));
    assert_eq!(
        member(&ms, "escaping").link.as_deref(),
        Some("../../../../etc/passwd")
    );
    assert_eq!(member(&ms, "dangling").kind, '2');
}

#[test]
fn top_level_source_must_resolve_inside_the_context() {
    let c = Ctx::new();
    let outside = c.root.parent().unwrap().join("outside");
    fs::create_dir(&outside).unwrap();
    fs::write(outside.join("secret"), b"s").unwrap();
    symlink(&outside, c.root.join("out")).unwrap();
    c.dir("inside", 0o755);
    for p in ["out", "out/secret", "inside/../../outside"] {
        let err = c.build(vec![add("x/", path(p))]).unwrap_err();
        assert!(matches!(err, Error::ResolveSource { .. }), "{p}: {err}");
        assert!(err.to_string().contains(&format!("`{p}`")), "{err}");
    }
    // A top-level symlink that stays inside is followed; its name is the one written.
    c.file("real/f", b"1", 0o644);
    symlink("real/f", c.root.join("alias")).unwrap();
    let tree = c.build(vec![add("x/", path("alias"))]).unwrap();
    assert_eq!(member(&members(&tar_of(&tree)), "x/alias").data, b"1");
}

#[test]
fn missing_special_and_non_utf8_sources_are_named() {
    let c = Ctx::new();
    let err = c.build(vec![add("x", path("nope/file"))]).unwrap_err();
    assert!(matches!(err, Error::FindSource { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("`nope/file`") && msg.contains(&c.root.display().to_string()),
        "{msg}"
    );

    c.dir("s", 0o755);
    let _sock = std::os::unix::net::UnixListener::bind(c.root.join("s/sock")).unwrap();
    let err = c.build(vec![add("x", path("s"))]).unwrap_err();
    assert!(
        matches!(err, Error::AddSpecialFile { kind: "socket", .. }),
        "{err}"
    );
    assert!(err.to_string().contains("s/sock"), "{err}");
    // Excluding it is the fix the message suggests.
    c.build(vec![add("x", globbed("s", &[], &["sock"]))])
        .unwrap();

    use std::os::unix::ffi::OsStrExt;
    c.dir("n", 0o755);
    fs::write(
        c.root
            .join("n")
            .join(std::ffi::OsStr::from_bytes(b"bad\xff")),
        b"",
    )
    .unwrap();
    let err = c.build(vec![add("x", path("n"))]).unwrap_err();
    assert!(matches!(err, Error::DecodePath { .. }), "{err}");
    assert!(err.to_string().contains("not valid UTF-8"), "{err}");
}

#[test]
fn a_file_changed_after_the_tree_was_read_is_an_error() {
    let c = Ctx::new();
    let f = c.file("f", b"12345", 0o644);
    let tree = c.build(vec![add("f", path("f"))]).unwrap();
    fs::write(&f, b"123456").unwrap();
    let err = write_layer(&tree, &opts(Compression::None, 1), Vec::new()).unwrap_err();
    assert!(
        matches!(err, Error::SourceChanged { expected: 5, .. }),
        "{err}"
    );
}

// ---------------------------------------------------------------------------------------------
// Include / exclude

fn glob_fixture() -> Ctx {
    let c = Ctx::new();
    for f in [
        "p/src/main.rs",
        "p/src/lib.rs",
        "p/src/gen/x.rs",
        "p/target/debug/app",
        "p/docs/readme.md",
        "p/docs/api/index.md",
        "p/notes.log",
        "p/deep/notes.log",
        "p/cache/a",
        "p/sub/cache",
    ] {
        c.file(f, b"x", 0o644);
    }
    c.dir("p/empty", 0o755);
    c
}

fn glob_names(c: &Ctx, include: &[&str], exclude: &[&str]) -> Vec<String> {
    names(&tar_of(
        &c.build(vec![add("", globbed("p", include, exclude))])
            .unwrap(),
    ))
}

#[test]
fn exclude_prunes_and_matches_gitignore_style() {
    let c = glob_fixture();
    assert_eq!(
        glob_names(&c, &[], &["*.log", "target/", "cache/"]),
        [
            "deep/", // its only file is excluded, the directory itself is not
            "docs/",
            "docs/api/",
            "docs/api/index.md",
            "docs/readme.md",
            "empty/",
            "src/",
            "src/gen/",
            "src/gen/x.rs",
            "src/lib.rs",
            "src/main.rs",
            "sub/",
            "sub/cache"
        ]
    );
    // Anchored pattern: only the top-level docs/*.md, not docs/api/index.md.
    assert!(!glob_names(&c, &[], &["/docs/*.md"]).contains(&"docs/readme.md".to_string()));
    assert!(glob_names(&c, &[], &["/docs/*.md"]).contains(&"docs/api/index.md".to_string()));
}

#[test]
fn include_takes_matching_files_and_their_parents() {
    let c = glob_fixture();
    assert_eq!(
        glob_names(&c, &["*.rs"], &[]),
        [
            "src/",
            "src/gen/",
            "src/gen/x.rs",
            "src/lib.rs",
            "src/main.rs"
        ]
    );
    assert_eq!(
        glob_names(&c, &["docs/"], &[]),
        ["docs/", "docs/api/", "docs/api/index.md", "docs/readme.md"]
    );
    assert_eq!(
        glob_names(&c, &["/docs/*.md"], &[]),
        ["docs/", "docs/readme.md"]
    );
    // Exclude wins over include.
    assert_eq!(
        glob_names(&c, &["*.rs"], &["gen/"]),
        ["src/", "src/lib.rs", "src/main.rs"]
    );
    // Included into a destination: the destination directory is a parent too.
    let tree = c
        .build(vec![add("app", globbed("p", &["main.rs"], &[]))])
        .unwrap();
    assert_eq!(
        names(&tar_of(&tree)),
        ["app/", "app/src/", "app/src/main.rs"]
    );
}

// ---------------------------------------------------------------------------------------------
// Conflicts and merges

#[test]
fn two_entries_at_one_path_are_an_error_naming_both() {
    let c = Ctx::new();
    c.file("a/conf", b"1", 0o644);
    c.file("b/conf", b"2", 0o644);
    let err = c
        .build(vec![add("etc", path("a")), add("etc", path("b"))])
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::MergeEntries { .. }), "{msg}");
    assert!(msg.contains("`/etc/conf`"), "{msg}");
    assert!(
        msg.contains("add entry #1 (path `a`") && msg.contains("add entry #2 (path `b`"),
        "{msg}"
    );
    assert!(
        msg.contains("host file `a/conf`") && msg.contains("host file `b/conf`"),
        "{msg}"
    );

    // File vs directory, and file where a parent directory is needed.
    let err = c
        .build(vec![
            add("etc/conf", Source::Content(vec![])),
            add("etc/conf", Source::Dir),
        ])
        .unwrap_err();
    assert!(err.to_string().contains("`/etc/conf`"), "{err}");
    let err = c
        .build(vec![
            add("etc", Source::Content(vec![])),
            add("etc/x", Source::Symlink("y".into())),
        ])
        .unwrap_err();
    assert!(err.to_string().contains("as a parent directory"), "{err}");

    // Directories merge: the two trees land side by side, explicit modes win.
    c.file("c/other", b"3", 0o644);
    let mut d = add("etc", Source::Dir);
    d.dir_mode = Some(0o750);
    let tree = c
        .build(vec![add("etc", path("a")), add("etc", path("c")), d])
        .unwrap();
    let ms = members(&tar_of(&tree));
    assert_eq!(names(&tar_of(&tree)), ["etc/", "etc/conf", "etc/other"]);
    assert_eq!(member(&ms, "etc/").mode, 0o750);
}

#[test]
fn a_tree_and_its_first_error_are_the_same_on_one_thread_and_many() {
    // The walk's replay takes each directory's listing while the pool still reads the others;
    // on a pool of one thread the replaying thread runs the reading tasks itself.
    let c = Arc::new(Ctx::new());
    for a in 0..6 {
        for b in 0..4 {
            for f in 0..3 {
                let name = format!("t/d{a}/e{b}/f{f}.txt");
                c.file(&name, name.as_bytes(), 0o644);
            }
        }
    }
    symlink("d0/e0/f0.txt", c.root.join("t/link")).unwrap();
    let shape = |tree: &LayerTree| -> Vec<String> {
        tree.iter()
            .map(|(p, e)| match &e.kind {
                EntryKind::Dir => format!("{p}/"),
                EntryKind::File { size, .. } => format!("{p} {size}"),
                EntryKind::Symlink { target } => format!("{p} -> {target}"),
                EntryKind::Device { .. } => unreachable!("no devices here"),
            })
            .collect()
    };
    // On a thread of its own, so that a walk that never ends fails the test instead of
    // hanging it.
    let in_pool = |threads: usize| {
        let c = c.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            let _ = tx.send(pool.install(|| c.build(vec![add("x/", path("t"))])));
        });
        rx.recv_timeout(std::time::Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("the walk on {threads} thread(s) did not finish"))
    };
    let one = in_pool(1).unwrap();
    let four = in_pool(4).unwrap();
    let outside = c.build(vec![add("x/", path("t"))]).unwrap();
    // x, t's 6 directories, their 24, 72 files, the link.
    assert_eq!(one.len(), 1 + 6 + 24 + 72 + 1);
    assert_eq!(shape(&one), shape(&four));
    assert_eq!(shape(&one), shape(&outside));
    assert_eq!(one.walked(), four.walked());
    assert_eq!(one.walked(), outside.walked());

    // Two bad names in different directories: the one the walk meets first, whatever the
    // threads.
    use std::os::unix::ffi::OsStrExt;
    for dir in ["t/d1/e2", "t/d4/e0"] {
        fs::write(
            c.root
                .join(dir)
                .join(std::ffi::OsStr::from_bytes(b"bad\xff")),
            b"",
        )
        .unwrap();
    }
    let first = in_pool(1).unwrap_err().to_string();
    assert!(first.contains("not valid UTF-8"), "{first}");
    for _ in 0..3 {
        assert_eq!(in_pool(4).unwrap_err().to_string(), first);
    }
}
