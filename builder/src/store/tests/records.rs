//! Node keys and their records, and the stat index of host files.

use super::*;

// ---- keys ----

#[test]
fn key_record_round_trip() {
    let (_dir, store) = new_store();
    let result = layer(&store, &bytes(10, 1234));
    assert_eq!(store.get_key(&key(1)).unwrap(), None);
    store.put_key(&key(1), &result).unwrap();
    assert_eq!(store.get_key(&key(1)).unwrap(), Some(result.clone()));

    // The record is canonical JSON with the blob's fingerprint.
    let path = store.key_path(&key(1)).unwrap();
    assert_eq!(path.parent().unwrap().file_name().unwrap(), &key(1)[..2]);
    let text = fs::read_to_string(&path).unwrap();
    assert!(text.starts_with(r#"{"fingerprints":{"sha256:"#), "{text}");
    let record = read_key_file(&store, &key(1));
    let blob_meta = fs::metadata(store.blob_path(&blob_of(&result))).unwrap();
    assert_eq!(
        record.fingerprints[result.blobs()[0].0],
        Fingerprint::of(&blob_meta)
    );

    // A record of several blobs and free-form data.
    let (config, config_size) = store.write_blob(b"{\"config\":1}").unwrap();
    let (manifest, manifest_size) = store.write_blob(b"{\"manifest\":1}").unwrap();
    let image = NodeResult::Blobs(BlobsRecord {
        blobs: vec![
            BlobRef {
                digest: config.to_string(),
                size: config_size,
                media_type: "application/vnd.oci.image.config.v1+json".into(),
            },
            BlobRef {
                digest: manifest.to_string(),
                size: manifest_size,
                media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            },
        ],
        data: serde_json::json!({"platform": "linux/amd64"}),
    });
    store.put_key(&key(2), &image).unwrap();
    assert_eq!(store.get_key(&key(2)).unwrap(), Some(image));
    // A missing blob of a multi-blob record is a miss.
    fs::remove_file(store.blob_path(&manifest)).unwrap();
    assert_eq!(store.get_key(&key(2)).unwrap(), None);
}

#[test]
fn put_key_checks_key_and_blobs() {
    let (_dir, store) = new_store();
    let result = layer(&store, &bytes(11, 100));
    assert!(matches!(
        store.put_key("not-a-key", &result),
        Err(Error::InvalidKey { .. })
    ));
    assert!(matches!(
        store.put_key(&key(1).to_uppercase(), &result),
        Err(Error::InvalidKey { .. })
    ));
    let missing = NodeResult::Layer(LayerRecord {
        digest: Digest::of(b"absent").to_string(),
        diff_id: String::new(),
        size: 6,
        media_type: String::new(),
    });
    assert!(matches!(
        store.put_key(&key(1), &missing),
        Err(Error::MissingBlob { .. })
    ));
    let NodeResult::Layer(mut wrong_size) = result else {
        unreachable!()
    };
    wrong_size.size += 1;
    assert!(matches!(
        store.put_key(&key(1), &NodeResult::Layer(wrong_size)),
        Err(Error::BlobSize { .. })
    ));
    assert!(!store.key_path(&key(1)).unwrap().exists());
}

#[test]
fn truncated_blob_is_a_miss_and_is_removed() {
    let (_dir, store) = new_store();
    let result = layer(&store, &bytes(12, 10_000));
    store.put_key(&key(1), &result).unwrap();
    let blob = store.blob_path(&blob_of(&result));
    make_writable(&blob);
    File::options()
        .write(true)
        .open(&blob)
        .unwrap()
        .set_len(5000)
        .unwrap();
    assert_eq!(store.get_key(&key(1)).unwrap(), None);
    assert!(!blob.exists());
    assert!(!store.key_path(&key(1)).unwrap().exists());
}

#[test]
fn corrupted_same_size_blob_with_new_mtime_is_detected() {
    let (_dir, store) = new_store();
    let content = bytes(13, 10_000);
    let result = layer(&store, &content);
    store.put_key(&key(1), &result).unwrap();
    let blob = store.blob_path(&blob_of(&result));
    make_writable(&blob);
    let mut damaged = content.clone();
    damaged[5000] ^= 0xff;
    fs::write(&blob, &damaged).unwrap();
    set_mtime(&blob, ago(60)); // a different mtime than recorded, whatever the clock granule
    assert_eq!(store.get_key(&key(1)).unwrap(), None);
    assert!(!blob.exists());
    assert!(!store.key_path(&key(1)).unwrap().exists());
}

#[test]
fn blob_rewritten_with_same_content_through_a_hard_link_stays_a_hit() {
    let (dir, store) = new_store();
    let content = bytes(14, 10_000);
    let result = layer(&store, &content);
    store.put_key(&key(1), &result).unwrap();
    let digest = blob_of(&result);
    let output = dir.path().join("output-blob");
    store.link_out(&digest, &output).unwrap();

    // Someone writes the same bytes through the output: the blob's mtime moves.
    make_writable(&output);
    fs::write(&output, &content).unwrap();
    set_mtime(&output, ago(30));
    let blob_meta = fs::metadata(store.blob_path(&digest)).unwrap();
    let recorded = read_key_file(&store, &key(1)).fingerprints[&digest.to_string()];
    assert!(!recorded.unchanged(&Fingerprint::of(&blob_meta)));

    assert_eq!(store.get_key(&key(1)).unwrap(), Some(result.clone()));
    // The fingerprint was refreshed to the blob's current stat data.
    let refreshed = read_key_file(&store, &key(1)).fingerprints[&digest.to_string()];
    assert_eq!(refreshed, Fingerprint::of(&blob_meta));
    assert_eq!(store.get_key(&key(1)).unwrap(), Some(result));
}

#[test]
fn unreadable_key_or_missing_blob_is_a_miss() {
    let (_dir, store) = new_store();
    let result = layer(&store, &bytes(15, 100));
    store.put_key(&key(1), &result).unwrap();
    let path = store.key_path(&key(1)).unwrap();
    fs::write(&path, b"{\"result\": trunc").unwrap();
    assert_eq!(store.get_key(&key(1)).unwrap(), None);
    assert!(!path.exists());

    store.put_key(&key(2), &result).unwrap();
    fs::remove_file(store.blob_path(&blob_of(&result))).unwrap();
    assert_eq!(store.get_key(&key(2)).unwrap(), None);
    assert!(matches!(
        store.get_key("xyz"),
        Err(Error::InvalidKey { .. })
    ));
}

#[test]
fn a_hit_marks_the_key_as_used() {
    let (_dir, store) = new_store();
    let result = layer(&store, &bytes(16, 100));
    store.put_key(&key(1), &result).unwrap();
    let path = store.key_path(&key(1)).unwrap();
    set_mtime(&path, ago(86_400));
    assert!(store.get_key(&key(1)).unwrap().is_some());
    assert!(mtime(&path) > ago(60));
}

// ---- stat index ----

#[test]
fn hash_file_is_blake3_of_the_content() {
    let dir = tempfile::tempdir().unwrap();
    for len in [0, 1, 1 << 20, 3 * (1 << 20) + 5] {
        let content = bytes(20, len);
        let path = dir.path().join(format!("f{len}"));
        fs::write(&path, &content).unwrap();
        assert_eq!(
            hash_file(&path).unwrap(),
            *blake3::hash(&content).as_bytes()
        );
    }
    assert!(hash_file(&dir.path().join("missing")).is_err());
}

#[test]
fn stat_index_hits_when_nothing_changed() {
    let (dir, store) = new_store();
    let file = host_file(dir.path(), "a.txt", b"hello");
    let mut index = StatIndex::load(&store).unwrap();
    let meta = fs::metadata(&file).unwrap();
    assert_eq!(index.lookup(&file, &meta), None);
    let hash = index.content_hash(&file, &meta).unwrap();
    assert_eq!(hash, *blake3::hash(b"hello").as_bytes());
    assert_eq!(index.lookup(&file, &meta), Some(hash));
    index.save(&store).unwrap();

    let index = StatIndex::load(&store).unwrap();
    assert_eq!(index.len(), 1);
    assert_eq!(
        index.lookup(&file, &fs::metadata(&file).unwrap()),
        Some(hash)
    );
}

#[test]
fn a_stat_index_loading_in_the_background_is_what_its_readers_see_and_its_error_is_kept() {
    let (dir, store) = new_store();
    let mut index = StatIndex::new();
    let files: Vec<PathBuf> = (0..100u8)
        .map(|i| host_file(dir.path(), &format!("f{i}"), &[i]))
        .collect();
    for file in &files {
        index
            .content_hash(file, &fs::metadata(file).unwrap())
            .unwrap();
    }
    index.save(&store).unwrap();

    // A reader that comes at once waits for the load: it never sees the empty index.
    let (loaded, loading) = StatIndex::load_in_background(&store);
    {
        let index = loaded.read().unwrap();
        assert_eq!(index.len(), 100);
        for file in &files {
            assert!(index.lookup(file, &fs::metadata(file).unwrap()).is_some());
        }
    }
    loading.finish().unwrap();

    // An index that cannot be read (a directory in its place): the error comes from `finish`,
    // and the lock holds an empty index meanwhile.
    let path = store.root().join("stat-index");
    fs::remove_file(&path).unwrap();
    fs::create_dir(&path).unwrap();
    assert!(StatIndex::load(&store).is_err());
    let (empty, loading) = StatIndex::load_in_background(&store);
    assert!(empty.read().unwrap().is_empty());
    let e = loading.finish().unwrap_err().to_string();
    assert!(e.contains("stat-index"), "{e}");
}

#[test]
fn stat_index_touch_and_content_change() {
    let (dir, store) = new_store();
    let file = host_file(dir.path(), "a.txt", b"version 1");
    let mut index = StatIndex::load(&store).unwrap();
    let first = index
        .content_hash(&file, &fs::metadata(&file).unwrap())
        .unwrap();

    // touch: new mtime, same content -> not trusted, re-hashed to the same hash.
    set_mtime(&file, ago(50));
    let meta = fs::metadata(&file).unwrap();
    assert_eq!(index.lookup(&file, &meta), None);
    assert_eq!(index.content_hash(&file, &meta).unwrap(), first);
    assert_eq!(index.lookup(&file, &meta), Some(first));

    // New content (same size) -> a different hash.
    fs::write(&file, b"version 2").unwrap();
    set_mtime(&file, ago(40));
    let meta = fs::metadata(&file).unwrap();
    assert_eq!(index.lookup(&file, &meta), None);
    let second = index.content_hash(&file, &meta).unwrap();
    assert_ne!(second, first);
    assert_eq!(second, *blake3::hash(b"version 2").as_bytes());

    // A chmod moves ctime and mode: not trusted either.
    fs::set_permissions(&file, Permissions::from_mode(0o755)).unwrap();
    assert_eq!(index.lookup(&file, &fs::metadata(&file).unwrap()), None);
}

#[test]
fn racy_stat_index_entries_are_not_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let mut index = StatIndex::new();
    // Modified just now: hashed, but not trusted until it is older than the entry by 2 s.
    let fresh = dir.path().join("fresh");
    fs::write(&fresh, b"x").unwrap();
    let meta = fs::metadata(&fresh).unwrap();
    let hash = index.content_hash(&fresh, &meta).unwrap();
    assert_eq!(hash, *blake3::hash(b"x").as_bytes());
    assert_eq!(index.lookup(&fresh, &meta), None);

    // Modified 1 s ago: still within the margin.
    let recent = dir.path().join("recent");
    fs::write(&recent, b"y").unwrap();
    set_mtime(&recent, ago(1));
    let meta = fs::metadata(&recent).unwrap();
    index.content_hash(&recent, &meta).unwrap();
    assert_eq!(index.lookup(&recent, &meta), None);

    // A future mtime (clock skew) is never trusted.
    let future = dir.path().join("future");
    fs::write(&future, b"z").unwrap();
    set_mtime(&future, SystemTime::now() + Duration::from_secs(3600));
    let meta = fs::metadata(&future).unwrap();
    index.content_hash(&future, &meta).unwrap();
    assert_eq!(index.lookup(&future, &meta), None);

    // Old enough: trusted.
    let old = host_file(dir.path(), "old", b"w");
    let meta = fs::metadata(&old).unwrap();
    let hash = index.content_hash(&old, &meta).unwrap();
    assert_eq!(index.lookup(&old, &meta), Some(hash));
}

#[test]
fn stat_index_relative_paths_are_made_absolute() {
    let dir = tempfile::tempdir().unwrap();
    let file = host_file(dir.path(), "rel.txt", b"r");
    let cwd = std::env::current_dir().unwrap();
    let relative = pathdiff(&file, &cwd);
    let mut index = StatIndex::new();
    let meta = fs::metadata(&file).unwrap();
    let hash = index.content_hash(&relative, &meta).unwrap();
    assert_eq!(index.lookup(&file, &meta), Some(hash));
}

#[test]
fn stat_index_folds_dot_dot_in_absolute_paths() {
    let dir = tempfile::tempdir().unwrap();
    let file = host_file(dir.path(), "f.txt", b"f");
    fs::create_dir(dir.path().join("sub")).unwrap();
    let mut index = StatIndex::new();
    let meta = fs::metadata(&file).unwrap();
    let hash = index.content_hash(&file, &meta).unwrap();
    // `sub/../f.txt` is the same file.
    let round_about = dir.path().join("sub").join("..").join("f.txt");
    assert_eq!(index.lookup(&round_about, &meta), Some(hash));
    // A name made of dots and more is a name, not `..`.
    let named = host_file(dir.path(), "..f.txt", b"g");
    let named_meta = fs::metadata(&named).unwrap();
    let named_hash = index.content_hash(&named, &named_meta).unwrap();
    assert_ne!(named_hash, hash);
    assert_eq!(
        index.lookup(&dir.path().join("sub/../..f.txt"), &named_meta),
        Some(named_hash)
    );
}

/// `path` relative to `base` (both absolute), with `..` as needed.
fn pathdiff(path: &Path, base: &Path) -> PathBuf {
    let path: Vec<_> = path.components().collect();
    let base: Vec<_> = base.components().collect();
    let common = path.iter().zip(&base).take_while(|(a, b)| a == b).count();
    let mut out = PathBuf::new();
    for _ in common..base.len() {
        out.push("..");
    }
    for c in &path[common..] {
        out.push(c);
    }
    out
}

#[test]
fn stat_index_save_merges_with_other_processes() {
    let (dir, store) = new_store();
    let a = host_file(dir.path(), "a", b"a");
    let b = host_file(dir.path(), "b", b"b");
    let shared = host_file(dir.path(), "shared", b"s");
    let mut first = StatIndex::load(&store).unwrap();
    let mut second = StatIndex::load(&store).unwrap();
    first.insert(&a, &fs::metadata(&a).unwrap(), [1; 32]);
    first.insert(&shared, &fs::metadata(&shared).unwrap(), [3; 32]);
    std::thread::sleep(Duration::from_millis(5));
    second.insert(&b, &fs::metadata(&b).unwrap(), [2; 32]);
    second.insert(&shared, &fs::metadata(&shared).unwrap(), [4; 32]);
    second.save(&store).unwrap();
    first.save(&store).unwrap(); // saved last, but its `shared` entry is older

    let merged = StatIndex::load(&store).unwrap();
    assert_eq!(merged.len(), 3);
    assert_eq!(merged.lookup(&a, &fs::metadata(&a).unwrap()), Some([1; 32]));
    assert_eq!(merged.lookup(&b, &fs::metadata(&b).unwrap()), Some([2; 32]));
    assert_eq!(
        merged.lookup(&shared, &fs::metadata(&shared).unwrap()),
        Some([4; 32])
    );
    // The saver sees the merged set too.
    assert_eq!(first.len(), 3);
}

#[test]
fn a_stat_index_takes_in_what_another_process_saved_and_keeps_its_own_to_save() {
    let (dir, store) = new_store();
    let a = host_file(dir.path(), "a", b"a");
    let mine_only = host_file(dir.path(), "mine", b"m");
    let shared = host_file(dir.path(), "shared", b"s");
    let meta = |p: &Path| fs::metadata(p).unwrap();
    let mut mine = StatIndex::load(&store).unwrap();
    mine.merge_saved(&store).unwrap(); // no index file yet
    assert!(mine.is_empty());
    let mut other = StatIndex::load(&store).unwrap();
    mine.insert(&mine_only, &meta(&mine_only), [5; 32]);
    mine.insert(&shared, &meta(&shared), [3; 32]);
    std::thread::sleep(Duration::from_millis(5));
    other.insert(&a, &meta(&a), [1; 32]);
    other.insert(&shared, &meta(&shared), [4; 32]);
    other.save(&store).unwrap();

    mine.merge_saved(&store).unwrap();
    assert_eq!(mine.lookup(&a, &meta(&a)), Some([1; 32]));
    assert_eq!(mine.lookup(&shared, &meta(&shared)), Some([4; 32]), "newer");
    assert_eq!(mine.lookup(&mine_only, &meta(&mine_only)), Some([5; 32]));
    // Taking in the saved file saved nothing: its own entry goes with its next save.
    assert_eq!(StatIndex::load(&store).unwrap().len(), 2);
    mine.save(&store).unwrap();
    let saved = StatIndex::load(&store).unwrap();
    assert_eq!(saved.len(), 3);
    assert_eq!(saved.lookup(&mine_only, &meta(&mine_only)), Some([5; 32]));
    assert_eq!(saved.lookup(&shared, &meta(&shared)), Some([4; 32]));
}

#[test]
fn corrupt_or_truncated_stat_index_loads_empty() {
    let (dir, store) = new_store();
    let mut index = StatIndex::new();
    for i in 0..10 {
        let file = host_file(dir.path(), &format!("f{i}"), &[i]);
        index
            .content_hash(&file, &fs::metadata(&file).unwrap())
            .unwrap();
    }
    index.save(&store).unwrap();
    let path = store.root().join("stat-index");
    let good = fs::read(&path).unwrap();
    assert_eq!(StatIndex::load(&store).unwrap().len(), 10);

    let mut flipped = good.clone();
    flipped[40] ^= 1;
    let mut other_version = good.clone();
    other_version[8] = 99;
    for bad in [
        Vec::new(),
        b"garbage".to_vec(),
        good[..good.len() / 2].to_vec(),
        good[..good.len() - 1].to_vec(),
        flipped,
        other_version,
    ] {
        fs::write(&path, &bad).unwrap();
        assert!(StatIndex::load(&store).unwrap().is_empty());
    }
    // And saving over a corrupt index works.
    let file = host_file(dir.path(), "new", b"n");
    let mut index = StatIndex::load(&store).unwrap();
    index
        .content_hash(&file, &fs::metadata(&file).unwrap())
        .unwrap();
    index.save(&store).unwrap();
    assert_eq!(StatIndex::load(&store).unwrap().len(), 1);
}

#[test]
fn stat_index_of_50k_entries_round_trips() {
    let (dir, store) = new_store();
    let file = host_file(dir.path(), "f", b"f");
    let meta = fs::metadata(&file).unwrap();
    let mut index = StatIndex::new();
    let path = |i: u32| PathBuf::from(format!("/project/src/module{}/file-{i}.rs", i % 100));
    for i in 0..50_000u32 {
        index.insert(&path(i), &meta, *blake3::hash(&i.to_le_bytes()).as_bytes());
    }
    index.save(&store).unwrap();
    let loaded = StatIndex::load(&store).unwrap();
    assert_eq!(loaded.len(), 50_000);
    for i in [0, 1, 777, 49_999] {
        assert_eq!(
            loaded.lookup(&path(i), &meta),
            Some(*blake3::hash(&i.to_le_bytes()).as_bytes())
        );
    }
}

#[test]
fn stat_index_keeps_one_record_per_path_through_replacements() {
    let (dir, store) = new_store();
    let a = host_file(dir.path(), "a", b"a");
    let b = host_file(dir.path(), "b", b"b");
    let (meta_a, meta_b) = (fs::metadata(&a).unwrap(), fs::metadata(&b).unwrap());
    let mut index = StatIndex::new();
    index.insert(&a, &meta_a, [1; 32]);
    index.insert(&b, &meta_b, [2; 32]);
    // Replaced twice: the last insert is the entry, and only it is saved.
    index.insert(&a, &meta_a, [3; 32]);
    index.insert(&a, &meta_a, [4; 32]);
    assert_eq!(index.len(), 2);
    assert_eq!(index.lookup(&a, &meta_a), Some([4; 32]));
    index.save(&store).unwrap();

    let file = fs::read(store.root().join("stat-index")).unwrap();
    let record = |p: &Path| 6 * 8 + 4 + 32 + 4 + p.as_os_str().len();
    assert_eq!(file.len(), 8 + 4 + 8 + record(&a) + record(&b) + 32);
    let mut loaded = StatIndex::load(&store).unwrap();
    assert_eq!(loaded.len(), 2);
    assert_eq!(loaded.lookup(&a, &meta_a), Some([4; 32]));
    assert_eq!(loaded.lookup(&b, &meta_b), Some([2; 32]));
    // Replaced after loading, and saved again: still one record per path.
    loaded.insert(&b, &meta_b, [5; 32]);
    assert_eq!(loaded.lookup(&b, &meta_b), Some([5; 32]));
    loaded.save(&store).unwrap();
    assert_eq!(
        fs::read(store.root().join("stat-index")).unwrap().len(),
        file.len()
    );
    let again = StatIndex::load(&store).unwrap();
    assert_eq!(again.lookup(&a, &meta_a), Some([4; 32]));
    assert_eq!(again.lookup(&b, &meta_b), Some([5; 32]));
}
