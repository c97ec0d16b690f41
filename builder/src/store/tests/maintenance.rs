//! Prune, verify, locks, the store version and info.

use super::*;

// ---- prune and verify ----

fn put(store: &Store, n: u32, seed: u8, len: usize) -> NodeResult {
    let result = layer(store, &bytes(seed, len));
    store.put_key(&key(n), &result).unwrap();
    result
}

fn has_key(store: &Store, n: u32) -> bool {
    store.key_path(&key(n)).unwrap().exists()
}

fn set_key_age(store: &Store, n: u32, secs: u64) {
    set_mtime(&store.key_path(&key(n)).unwrap(), ago(secs));
}

#[test]
fn prune_by_age_respects_keep_sets_and_cleans_orphans_and_temp_files() {
    let (_dir, store) = new_store();
    let old = put(&store, 1, 1, 1000);
    let old_kept = put(&store, 2, 2, 1000);
    let recent = put(&store, 3, 3, 1000);
    // An old key sharing its blob with a recent one.
    store.put_key(&key(4), &recent).unwrap();
    set_key_age(&store, 1, 3 * 86_400);
    set_key_age(&store, 2, 3 * 86_400);
    set_key_age(&store, 4, 3 * 86_400);
    let (orphan, _) = store.write_blob(&bytes(5, 500)).unwrap();
    let (kept_orphan, _) = store.write_blob(&bytes(6, 500)).unwrap();
    let stale_tmp = store.blobs_dir().join(".tmp-stale");
    fs::write(&stale_tmp, vec![0; 300]).unwrap();
    set_mtime(&stale_tmp, ago(2 * 3600));
    let fresh_tmp = store.blobs_dir().join(".tmp-writing");
    fs::write(&fresh_tmp, b"in progress").unwrap();
    let stale_key_tmp = store.keys_dir().join(&key(1)[..2]).join(".tmp-k");
    fs::write(&stale_key_tmp, b"{").unwrap();
    set_mtime(&stale_key_tmp, ago(2 * 3600));

    let lock = store.lock_exclusive().unwrap();
    let report = store
        .prune(
            &lock,
            &PruneOptions {
                older_than: Some(Duration::from_secs(86_400)),
                max_size: None,
                keep_keys: HashSet::from([key(2)]),
                keep_blobs: HashSet::from([kept_orphan.to_string()]),
            },
        )
        .unwrap();
    drop(lock);

    assert!(!has_key(&store, 1));
    assert!(has_key(&store, 2));
    assert!(has_key(&store, 3));
    assert!(!has_key(&store, 4));
    assert!(!store.has_blob(&blob_of(&old)));
    assert!(store.has_blob(&blob_of(&old_kept)));
    assert!(store.has_blob(&blob_of(&recent)));
    assert!(!store.has_blob(&orphan));
    assert!(store.has_blob(&kept_orphan));
    assert!(!stale_tmp.exists());
    assert!(!stale_key_tmp.exists());
    assert!(fresh_tmp.exists());
    assert_eq!(report.removed_keys, 2);
    assert_eq!(report.removed_blobs, 2);
    assert!(report.freed_bytes >= 1000 + 500 + 300, "{report:?}");
    assert_eq!(store.get_key(&key(3)).unwrap(), Some(recent));
}

#[test]
fn prune_by_size_evicts_least_recently_used_first() {
    let (_dir, store) = new_store();
    // Names and ages in different orders, so the order cannot come from the names.
    for (n, age) in [(1, 100), (2, 300), (3, 200), (4, 400)] {
        put(&store, n, n as u8, 1000);
        set_key_age(&store, n, age);
    }
    // Key 4 is the oldest, but used now: it becomes the most recent.
    assert!(store.get_key(&key(4)).unwrap().is_some());

    let lock = store.lock_exclusive().unwrap();
    let report = store
        .prune(
            &lock,
            &PruneOptions {
                max_size: Some(2500),
                ..Default::default()
            },
        )
        .unwrap();
    // 4000 bytes -> evict key 2 (300 s), then key 3 (200 s): 2000 <= 2500.
    assert!(!has_key(&store, 2));
    assert!(!has_key(&store, 3));
    assert!(has_key(&store, 1));
    assert!(has_key(&store, 4));
    assert_eq!(report.removed_keys, 2);
    assert_eq!(report.removed_blobs, 2);
    assert_eq!(store.info().unwrap().blob_bytes, 2000);

    // Kept keys are never evicted, even if the size cannot be reached.
    let report = store
        .prune(
            &lock,
            &PruneOptions {
                max_size: Some(0),
                keep_keys: HashSet::from([key(1)]),
                ..Default::default()
            },
        )
        .unwrap();
    assert!(has_key(&store, 1));
    assert!(!has_key(&store, 4));
    assert_eq!(report.removed_keys, 1);
    assert_eq!(store.info().unwrap().blob_bytes, 1000);
}

#[test]
fn prune_by_size_keeps_blobs_still_referenced() {
    let (_dir, store) = new_store();
    let shared = put(&store, 1, 1, 1000);
    store.put_key(&key(2), &shared).unwrap();
    put(&store, 3, 3, 1000);
    set_key_age(&store, 1, 300);
    set_key_age(&store, 2, 100);
    set_key_age(&store, 3, 200);
    let lock = store.lock_exclusive().unwrap();
    store
        .prune(
            &lock,
            &PruneOptions {
                max_size: Some(1000),
                ..Default::default()
            },
        )
        .unwrap();
    // Key 1 goes first but its blob is still key 2's; then key 3 and its blob go.
    assert!(!has_key(&store, 1));
    assert!(has_key(&store, 2));
    assert!(!has_key(&store, 3));
    assert_eq!(store.get_key(&key(2)).unwrap(), Some(shared));
}

#[test]
fn prune_drops_stat_entries_of_vanished_files() {
    let (dir, store) = new_store();
    let keep = host_file(dir.path(), "keep", b"k");
    let gone = host_file(dir.path(), "gone", b"g");
    let mut index = StatIndex::load(&store).unwrap();
    for file in [&keep, &gone] {
        index
            .content_hash(file, &fs::metadata(file).unwrap())
            .unwrap();
    }
    index.save(&store).unwrap();
    fs::remove_file(&gone).unwrap();
    let lock = store.lock_exclusive().unwrap();
    let report = store.prune(&lock, &PruneOptions::default()).unwrap();
    assert_eq!(report.removed_stat_entries, 1);
    let index = StatIndex::load(&store).unwrap();
    assert_eq!(index.len(), 1);
    assert!(index.lookup(&keep, &fs::metadata(&keep).unwrap()).is_some());
}

#[test]
fn prune_drops_kept_cargo_answers_of_vanished_directories_and_leaves_other_files_alone() {
    let (dir, store) = new_store();
    // What cargo answered in two packages, kept as a build keeps it; one package then goes.
    let answered = |name: &str| {
        let package = dir.path().join(name);
        fs::create_dir_all(package.join("src")).unwrap();
        fs::write(
            package.join("Cargo.toml"),
            format!("[package]\nname = \"{name}\"\nversion = \"0.1.0\"\nedition = \"2021\"\n"),
        )
        .unwrap();
        fs::write(package.join("src/main.rs"), "fn main() {}\n").unwrap();
        let (meta, fresh) = crate::cargo::metadata_kept(&package, &[]).unwrap();
        fresh.unwrap().keep(store.root(), &meta).unwrap();
        package
    };
    let kept = answered("kept");
    let gone = answered("gone");
    let answers = store.root().join(crate::cargo::KEPT_ANSWERS_DIR);
    let json = |dir: &Path| {
        let mut names: Vec<String> = list_dir(dir).unwrap().into_iter().map(|(n, _)| n).collect();
        names.retain(|n| n.ends_with(".json"));
        names.sort();
        names
    };
    let before = json(&answers);
    assert_eq!(before.len(), 2, "{before:?}");
    fs::remove_dir_all(&gone).unwrap();
    // A corrupt answer, a file that is not ours, a stale and a fresh temporary file.
    fs::write(answers.join(format!("{}.json", "0".repeat(64))), b"{").unwrap();
    fs::write(answers.join("notes.json"), b"mine").unwrap();
    let stale_tmp = answers.join(".tmp-stale");
    fs::write(&stale_tmp, b"{").unwrap();
    set_mtime(&stale_tmp, ago(2 * 3600));
    fs::write(answers.join(".tmp-writing"), b"{").unwrap();

    let lock = store.lock_exclusive().unwrap();
    let report = store.prune(&lock, &PruneOptions::default()).unwrap();
    assert_eq!(report.removed_cargo_answers, 2, "{report:?}");
    let after = json(&answers);
    assert_eq!(after.len(), 2, "{after:?}");
    assert!(after.contains(&"notes.json".to_string()), "{after:?}");
    let left = after.iter().find(|n| *n != "notes.json").unwrap();
    assert!(before.contains(left));
    assert_eq!(
        crate::cargo::kept_answer_of_use(left, &answers.join(left)),
        Some(true),
        "the answer of {} is the one left",
        kept.display()
    );
    assert!(!stale_tmp.exists());
    assert!(answers.join(".tmp-writing").exists());
}

#[test]
fn verify_removes_corrupt_blobs_and_their_keys_and_ignores_temp_files() {
    let (_dir, store) = new_store();
    let good = put(&store, 1, 1, 5000);
    let content = bytes(2, 5000);
    let bad = layer(&store, &content);
    store.put_key(&key(2), &bad).unwrap();
    let bad_blob = store.blob_path(&blob_of(&bad));
    // Corrupt it in place, same size, mtime restored: only a re-hash can tell.
    let before = mtime(&bad_blob);
    make_writable(&bad_blob);
    let mut damaged = content.clone();
    damaged[0] ^= 1;
    fs::write(&bad_blob, &damaged).unwrap();
    set_mtime(&bad_blob, before);
    let tmp = store.blobs_dir().join(".tmp-killed-writer");
    fs::write(&tmp, b"half a blob").unwrap();

    let lock = store.lock_exclusive().unwrap();
    let report = store.verify(&lock).unwrap();
    assert_eq!(report.checked, 2);
    assert_eq!(report.corrupt, vec![blob_of(&bad).to_string()]);
    assert_eq!(report.removed_keys, 1);
    assert!(!bad_blob.exists());
    assert!(!has_key(&store, 2));
    assert!(tmp.exists());
    assert_eq!(store.get_key(&key(1)).unwrap(), Some(good));

    let report = store.verify(&lock).unwrap();
    assert_eq!(report.checked, 1);
    assert!(report.corrupt.is_empty());
}

// ---- locks, version, info ----

#[test]
fn exclusive_lock_waits_for_shared_locks() {
    let (dir, first) = new_store();
    let second = Store::open(&dir.path().join("store")).unwrap();
    let shared = first.lock_shared().unwrap();
    assert!(second.try_lock_exclusive().unwrap().is_none());
    let other_shared = second.try_lock_shared().unwrap();
    assert!(other_shared.is_some());
    drop(shared);
    assert!(second.try_lock_exclusive().unwrap().is_none());
    drop(other_shared);
    let exclusive = second
        .try_lock_exclusive()
        .unwrap()
        .expect("no lock is held");
    assert!(first.try_lock_shared().unwrap().is_none());
    assert!(first.try_lock_exclusive().unwrap().is_none());
    drop(exclusive);
    assert!(first.try_lock_shared().unwrap().is_some());

    // A build waiting for a prune gets its lock when the prune is done.
    let exclusive = first.lock_exclusive().unwrap();
    let waiter = std::thread::spawn(move || {
        let _lock = second.lock_shared().unwrap();
    });
    std::thread::sleep(Duration::from_millis(50));
    assert!(!waiter.is_finished());
    drop(exclusive);
    waiter.join().unwrap();
}

#[test]
fn prune_and_verify_need_this_stores_lock() {
    let (_dir, store) = new_store();
    let (_other_dir, other) = new_store();
    let lock = other.lock_exclusive().unwrap();
    assert!(matches!(
        store.prune(&lock, &PruneOptions::default()),
        Err(Error::ForeignLock { .. })
    ));
    assert!(matches!(
        store.verify(&lock),
        Err(Error::ForeignLock { .. })
    ));
}

#[test]
fn store_version_is_checked() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let store = Store::open(&root).unwrap();
    assert_eq!(
        fs::read_to_string(root.join("version")).unwrap(),
        format!("{STORE_VERSION}\n")
    );
    // Another version, empty: recreated.
    fs::write(root.join("version"), "0\n").unwrap();
    Store::open(&root).unwrap();
    assert_eq!(
        fs::read_to_string(root.join("version")).unwrap().trim(),
        STORE_VERSION.to_string()
    );
    // Another version with content: a clear error.
    put(&store, 1, 1, 10);
    fs::write(root.join("version"), "999\n").unwrap();
    let err = Store::open(&root).unwrap_err();
    assert!(matches!(err, Error::Version { ref found, .. } if found == "999"));
    assert!(err.to_string().contains("delete the directory"), "{err}");
    fs::remove_file(root.join("version")).unwrap();
    assert!(matches!(Store::open(&root), Err(Error::Version { .. })));
}

#[test]
fn info_counts_the_store() {
    let (dir, store) = new_store();
    put(&store, 1, 1, 100);
    put(&store, 2, 2, 200);
    store.write_blob(&bytes(3, 50)).unwrap();
    fs::write(store.blobs_dir().join(".tmp-x"), b"xxxx").unwrap();
    let file = host_file(dir.path(), "f", b"f");
    let mut index = StatIndex::load(&store).unwrap();
    index
        .content_hash(&file, &fs::metadata(&file).unwrap())
        .unwrap();
    index.save(&store).unwrap();
    let info = store.info().unwrap();
    assert_eq!(
        info,
        StoreInfo {
            root: store.root().to_path_buf(),
            blobs: 3,
            blob_bytes: 350,
            keys: 2,
            stat_entries: 1,
        }
    );
}
