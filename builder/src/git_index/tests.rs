//! The reader against indexes written by the real `git`: every id it gives is the one
//! `git ls-files --stage` prints, for each index version and object format.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::Command;

use super::*;

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
        .args(args)
        .current_dir(dir)
        .output()
        .expect("git runs (installed by `just deps`)");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A repository with a few files (nested, executable, a symlink, a long path), committed.
fn repo(format: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    git(root, &["init", "-q", &format!("--object-format={format}")]);
    fs::create_dir_all(root.join("src/deep/er")).unwrap();
    fs::write(root.join("a.txt"), "alpha\n").unwrap();
    fs::write(root.join("src/lib.rs"), "pub fn f() {}\n").unwrap();
    fs::write(root.join("src/deep/er/x.bin"), [0u8, 1, 2, 255]).unwrap();
    fs::write(root.join("src/deep/empty"), "").unwrap();
    // A path longer than a byte can count (git keeps the length in 12 bits).
    let long = format!("src/{}/{}.txt", "n".repeat(200), "m".repeat(200));
    fs::create_dir_all(root.join(&long).parent().unwrap()).unwrap();
    fs::write(root.join(&long), "long name\n").unwrap();
    fs::write(root.join("run.sh"), "#!/bin/sh\n").unwrap();
    fs::set_permissions(
        root.join("run.sh"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    std::os::unix::fs::symlink("a.txt", root.join("link")).unwrap();
    // The index is written after the files, in a later timestamp tick, as a checkout leaves
    // it (an entry of the same tick would be racy).
    settle();
    git(root, &["add", "-A"]);
    git(root, &["commit", "-qm", "files"]);
    dir
}

/// Waits past the file system's timestamp granularity.
fn settle() {
    std::thread::sleep(std::time::Duration::from_millis(30));
}

/// `git ls-files --stage`: path -> (mode, hex id).
fn staged(root: &Path) -> BTreeMap<String, (String, String)> {
    git(root, &["ls-files", "--stage"])
        .lines()
        .map(|l| {
            let (meta, path) = l.split_once('\t').unwrap();
            let mut f = meta.split(' ');
            let mode = f.next().unwrap().to_owned();
            let id = f.next().unwrap().to_owned();
            (path.to_owned(), (mode, id))
        })
        .collect()
}

fn clean(index: &GitIndex, root: &Path, rel: &str) -> Option<String> {
    let path = fs::canonicalize(root).unwrap().join(rel);
    let meta = fs::symlink_metadata(&path).ok()?;
    index.clean_id(&path, &meta).map(|id| id.hex())
}

fn check_all_clean(root: &Path, format: ObjectFormat) {
    let index = GitIndex::discover(&root.join("src/deep")).unwrap().unwrap();
    assert_eq!(index.format(), format);
    let staged = staged(root);
    assert_eq!(index.len(), staged.len());
    for (path, (mode, id)) in &staged {
        let got = clean(&index, root, path);
        if mode == "120000" {
            assert_eq!(got, None, "a symlink is not a clean file: {path}");
        } else {
            assert_eq!(got.as_deref(), Some(id.as_str()), "{path}");
        }
    }
}

#[test]
fn every_index_version_and_object_format_gives_gits_own_ids() {
    for format in [ObjectFormat::Sha1, ObjectFormat::Sha256] {
        let dir = repo(format.name());
        let root = dir.path();
        for version in ["2", "3", "4", "2"] {
            git(root, &["update-index", "--index-version", version]);
            git(root, &["update-index", "--really-refresh"]);
            check_all_clean(root, format);
        }
    }
}

#[test]
fn a_changed_untracked_or_flagged_file_is_not_clean() {
    let dir = repo("sha1");
    let root = dir.path();
    let index = || GitIndex::discover(root).unwrap().unwrap();
    assert!(clean(&index(), root, "a.txt").is_some());
    // Same size, mtime put back: the ctime moved.
    let mtime = fs::metadata(root.join("a.txt"))
        .unwrap()
        .modified()
        .unwrap();
    fs::write(root.join("a.txt"), "ALPHA\n").unwrap();
    fs::File::options()
        .write(true)
        .open(root.join("a.txt"))
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    assert_eq!(clean(&index(), root, "a.txt"), None);
    // Untracked.
    fs::write(root.join("new.txt"), "new\n").unwrap();
    assert_eq!(clean(&index(), root, "new.txt"), None);
    // A path outside the worktree, and a directory.
    assert_eq!(clean(&index(), root, "src"), None);
    // assume-unchanged and skip-worktree entries are not trusted.
    assert!(clean(&index(), root, "src/lib.rs").is_some());
    git(root, &["update-index", "--assume-unchanged", "src/lib.rs"]);
    assert_eq!(clean(&index(), root, "src/lib.rs"), None);
    assert!(clean(&index(), root, "run.sh").is_some());
    git(root, &["update-index", "--skip-worktree", "run.sh"]);
    assert_eq!(clean(&index(), root, "run.sh"), None);
}

#[test]
fn an_entry_not_older_than_the_index_is_racy() {
    let dir = repo("sha1");
    let root = dir.path();
    let index_path = root.join(".git/index");
    let file_mtime = fs::metadata(root.join("a.txt"))
        .unwrap()
        .modified()
        .unwrap();
    let index = GitIndex::discover(root).unwrap().unwrap();
    assert!(clean(&index, root, "a.txt").is_some());
    // The index dated at the file's own mtime: the file may have been written again in the
    // same tick after git looked at it.
    fs::File::options()
        .write(true)
        .open(&index_path)
        .unwrap()
        .set_modified(file_mtime)
        .unwrap();
    let index = GitIndex::discover(root).unwrap().unwrap();
    assert_eq!(clean(&index, root, "a.txt"), None);
    // Read instead, its id computed as git does (SHA-1DC over `blob <size>\0` and the bytes).
    let path = fs::canonicalize(root).unwrap().join("a.txt");
    let meta = fs::metadata(&path).unwrap();
    assert_eq!(
        index.id(&path, &meta).map(|id| id.hex()),
        Some(staged(root)["a.txt"].1.clone())
    );
    // A changed file is not read: its stat data do not match.
    fs::write(&path, "changed\n").unwrap();
    let meta = fs::metadata(&path).unwrap();
    assert_eq!(index.id(&path, &meta), None);
}

#[test]
fn blob_ids_are_gits_for_both_object_formats() {
    for format in [ObjectFormat::Sha1, ObjectFormat::Sha256] {
        let dir = repo(format.name());
        let root = dir.path();
        for (path, (mode, id)) in staged(root) {
            if mode == "120000" {
                continue;
            }
            let full = root.join(&path);
            let size = fs::metadata(&full).unwrap().len();
            let got = blob_id(&full, size, format).unwrap().unwrap();
            assert_eq!(got.hex(), id, "{path}");
            assert_eq!(
                blob_id(&full, size + 1, format).unwrap(),
                None,
                "a size that moved"
            );
        }
    }
}

#[test]
fn a_linked_worktree_reads_its_own_index() {
    let dir = repo("sha1");
    let root = dir.path();
    let other = root.join("wt");
    git(root, &["worktree", "add", "-q", other.to_str().unwrap()]);
    // The checkout's entries may share the index's tick: `git status` rewrites a racy index.
    settle();
    git(&other, &["status", "--porcelain"]);
    let index = GitIndex::discover(&other.join("src")).unwrap().unwrap();
    assert_eq!(index.worktree(), fs::canonicalize(&other).unwrap());
    assert_eq!(
        clean(&index, &other, "src/lib.rs"),
        Some(staged(&other)["src/lib.rs"].1.clone())
    );
}

#[test]
fn conversions_that_keep_the_size_refuse_the_index() {
    let dir = repo("sha1");
    let root = dir.path();
    // End-of-line attributes are fine: they change sizes, which the alias key covers.
    fs::write(root.join(".gitattributes"), "* text=auto\n*.sh eol=lf\n").unwrap();
    git(root, &["add", ".gitattributes"]);
    assert!(GitIndex::discover(root).unwrap().is_some());
    fs::write(
        root.join("src/.gitattributes"),
        "*.bin filter=lfs diff=lfs\n",
    )
    .unwrap();
    git(root, &["add", "src/.gitattributes"]);
    let err = GitIndex::discover(root).unwrap_err();
    assert!(matches!(err, Error::Conversions { .. }), "{err}");
    assert!(err.to_string().contains("src/.gitattributes"), "{err}");
    fs::remove_file(root.join("src/.gitattributes")).unwrap();
    git(root, &["rm", "-q", "--cached", "src/.gitattributes"]);
    fs::create_dir_all(root.join(".git/info")).unwrap();
    fs::write(root.join(".git/info/attributes"), "*.c ident\n").unwrap();
    assert!(matches!(
        GitIndex::discover(root).unwrap_err(),
        Error::Conversions { .. }
    ));
}

#[test]
fn a_damaged_or_split_index_is_an_error_and_no_repository_is_none() {
    let dir = repo("sha1");
    let root = dir.path();
    let index_path = root.join(".git/index");
    let mut bytes = fs::read(&index_path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 1;
    fs::write(&index_path, &bytes).unwrap();
    assert!(matches!(
        GitIndex::discover(root).unwrap_err(),
        Error::Checksum { .. } | Error::Parse { .. }
    ));
    fs::remove_file(&index_path).unwrap();
    git(root, &["reset", "-q"]);
    git(root, &["update-index", "--split-index"]);
    let err = GitIndex::discover(root).unwrap_err();
    assert!(matches!(err, Error::SplitIndex { .. }), "{err:?}");
    let plain = tempfile::tempdir().unwrap();
    assert!(GitIndex::discover(plain.path()).unwrap().is_none());
}

#[test]
fn config_values_and_varints_read_as_git_writes_them() {
    let config = "[core]\n\tbare = false\n[extensions]\n\tobjectFormat = sha256 # set\n[Core]\n\tWorkTree = \"/x\"\n";
    assert_eq!(
        config_value(config, "extensions", "objectformat").as_deref(),
        Some("sha256")
    );
    assert_eq!(
        config_value(config, "core", "worktree").as_deref(),
        Some("/x")
    );
    assert_eq!(config_value(config, "core", "attributesfile"), None);
    assert!(object_format("[extensions]\nobjectformat = md5\n", Path::new("c")).is_err());
    // Git's encode_varint: 0 -> [0], 127 -> [0x7f], 128 -> [0x80, 0x00], 16511 -> [0xff, 0x7f].
    assert_eq!(varint(&[0]), Some((0, 1)));
    assert_eq!(varint(&[0x7f]), Some((127, 1)));
    assert_eq!(varint(&[0x80, 0x00]), Some((128, 2)));
    assert_eq!(varint(&[0xff, 0x7f]), Some((16511, 2)));
    assert_eq!(varint(&[0x80]), None);
}
