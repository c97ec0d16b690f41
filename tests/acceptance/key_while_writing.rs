//! Keying while writing: a cold build reads each new file once, for the layer and its key alike
//! (`plan`'s module docs). The image is the one keying first gives (checked by oci-image-tool,
//! skopeo and umoci), the JSON events say which keys are pending and then what they are, and
//! the next build finds every layer in the store without opening a file (inotify).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, SystemTime};

use cargo_oci_image_test_support::*;

/// A base whose `/srv` is 0750 (the layer's implicit `/srv` takes it while written), and an
/// image with a large layer of new files (keyed while written) and a small one (keyed first).
const BASE: &str = r#"name = "base"
epoch = 1000

[[layer]]
name = "srv"
[[layer.add]]
dir = true
dest = "/srv/"
dir-mode = "0750"
"#;

const SPEC: &str = r#"name = "kww"
from = "oci:../base-layout:latest"
epoch = 1000

[[layer]]
name = "assets"
[[layer.add]]
path = "assets"
dest = "/srv/assets/"
[[layer.add]]
content = "inline, beside the host files\n"
dest = "/srv/assets/VERSION"
[[layer.add]]
symlink = "big/0.bin"
dest = "/srv/assets/current"
[[layer.add]]
dir = true
dest = "/var/cache/kww/"

[[layer]]
name = "config"
[[layer.add]]
path = "config"
dest = "/etc/kww/"
"#;

/// A project on the base with 6 MiB of assets (large files, one ending where the writer's
/// 1 MiB chunk does, small and empty ones) and a small config, every file's mtime an hour ago
/// (so the stat index trusts what a build records, see the racy rule).
fn project() -> Project {
    let p = Project::new(SPEC);
    build_base_layout(p.root(), BASE);
    let mut noise = Noise::new(15);
    for i in 0..3 {
        p.file(
            &format!("assets/big/{i}.bin"),
            noise.bytes((2 << 20) - 4096 * i),
        );
    }
    for i in 0..120 {
        p.file(&format!("assets/small/{i:03}.txt"), noise.bytes(i * 53));
    }
    p.file("assets/small/empty", "");
    p.file("config/app.toml", "port = 8080\n");
    age(&p.dir.join("assets"));
    age(&p.dir.join("config"));
    p
}

/// Sets the mtime of every file under `dir` to an hour ago.
fn age(dir: &Path) {
    let past = SystemTime::now() - Duration::from_secs(3600);
    for file in walk(dir).iter().filter(|f| f.is_file()) {
        std::fs::File::options()
            .write(true)
            .open(file)
            .unwrap()
            .set_modified(past)
            .unwrap();
    }
}

/// `cargo-image ARGS --message-format json` in `dir`, which must succeed: its events.
fn events(dir: &Path, args: &[&str]) -> Vec<Value> {
    let r = cargo_image(dir)
        .args(args)
        .args(["--message-format", "json"])
        .run()
        .ok();
    json_events(&r.stdout)
}

/// The nodes of the last `plan` event: label -> (key, cached).
fn planned(events: &[Value]) -> BTreeMap<String, (Option<String>, Option<bool>)> {
    let plan = *of_kind(events, "plan").last().expect("a plan event");
    nodes(&plan["graph"])
}

/// The nodes of a graph: label -> (key, cached).
fn nodes(graph: &Value) -> BTreeMap<String, (Option<String>, Option<bool>)> {
    graph["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            let label = match n["kind"].as_str().unwrap() {
                "build-layer" => format!("layer {}", n["layer"].as_str().unwrap()),
                other => other.to_string(),
            };
            (
                label,
                (n["key"].as_str().map(str::to_owned), n["cached"].as_bool()),
            )
        })
        .collect()
}

/// The `layer-finished` events: name -> (key, cached).
fn finished(events: &[Value]) -> BTreeMap<String, (String, bool)> {
    of_kind(events, "layer-finished")
        .iter()
        .map(|e| {
            (
                format!("layer {}", e["name"].as_str().unwrap()),
                (
                    e["key"].as_str().expect("a key").to_owned(),
                    e["cached"].as_bool().unwrap(),
                ),
            )
        })
        .collect()
}

/// How many times each file under `dirs` was opened while `f` ran, by path.
fn opens(dirs: &[&Path], f: impl FnOnce()) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for line in files_opened(dirs, f) {
        if let Some(path) = line.strip_prefix("OPEN ") {
            *counts.entry(path.to_owned()).or_default() += 1;
        }
    }
    counts
}

#[test]
fn a_cold_build_reads_each_new_file_once_and_gives_the_image_keying_first_gives() {
    let p = project();
    let dir = &p.dir;
    let (assets, config) = (dir.join("assets"), dir.join("config"));
    let files = walk(&assets)
        .into_iter()
        .chain(walk(&config))
        .filter(|f| f.is_file())
        .count();

    // What `cargo image plan` keys (it reads every file it must, and prints real keys).
    let plan = cargo_image(dir)
        .args(["plan", "--format", "json", "--store", "store-plan"])
        .run()
        .ok();
    let plan = nodes(&serde_json::from_str(&plan.stdout).unwrap());
    assert!(plan.values().all(|(key, _)| key.is_some()), "{plan:?}");

    // A cold build: the assets layer (6 MiB at paths never seen) is keyed while written, and
    // so are the image and index above it; the small config layer is keyed first.
    let mut cold = Vec::new();
    let opened = opens(&[&assets, &config], || {
        cold = events(dir, &["build", "--store", "store", "--output", "out"]);
    });
    let cold_plan = planned(&cold);
    assert_eq!(
        cold_plan["layer assets"],
        (None, Some(false)),
        "{cold_plan:?}"
    );
    assert_eq!(
        cold_plan["layer config"],
        (plan["layer config"].0.clone(), Some(false))
    );
    assert_eq!(cold_plan["assemble-image"].0, None);
    assert_eq!(cold_plan["assemble-index"].0, None);
    // Its `layer-finished` event says the key it turned out to have: `plan`'s.
    let built = finished(&cold);
    assert_eq!(
        built["layer assets"],
        (plan["layer assets"].0.clone().unwrap(), false)
    );
    assert_eq!(
        built["layer config"],
        (plan["layer config"].0.clone().unwrap(), false)
    );
    // Every file opened once: to be written and hashed at once (the config's to key it, and
    // again to write it, as before: it is small).
    assert_eq!(opened.len(), files, "{opened:?}");
    for (path, n) in &opened {
        let expected = if path.contains("/config/") { 2 } else { 1 };
        assert_eq!(*n, expected, "{path} opened {n} times");
    }

    // The image is the one keying first gives: a copy of the store without its records, the
    // files touched (the stat index knows their paths, not their stat data): the assets
    // layer is keyed first (every file read), then built, and it is the same image.
    let cold_digest = manifest_digest(&p.out());
    let copied = std::process::Command::new("cp")
        .args(["-a", "store", "store-keyed-first"])
        .current_dir(dir)
        .status()
        .unwrap();
    assert!(copied.success());
    let records = dir.join("store-keyed-first/keys");
    std::fs::remove_dir_all(&records).unwrap();
    std::fs::create_dir(&records).unwrap();
    age(&assets);
    let first = events(
        dir,
        &[
            "build",
            "--store",
            "store-keyed-first",
            "--output",
            "out-first",
        ],
    );
    let first_plan = planned(&first);
    assert_eq!(
        first_plan["layer assets"],
        (plan["layer assets"].0.clone(), Some(false)),
        "keyed first: {first_plan:?}"
    );
    assert_eq!(first_plan["assemble-image"].0, plan["assemble-image"].0);
    assert!(!finished(&first)["layer assets"].1, "built again");
    assert_eq!(manifest_digest(&dir.join("out-first")), cold_digest);

    // Peer tools read the image built the new way.
    oci_image_tool_validate(&p.out(), "latest");
    let inspected = skopeo_inspect(&p.out(), "latest", None);
    assert_eq!(inspected["Digest"], cold_digest.as_str());
    assert_eq!(
        skopeo_inspect(&dir.join("out-first"), "latest", None)["Layers"],
        inspected["Layers"]
    );
    let bundle = p.root().join("bundle");
    umoci_unpack(&p.out(), "latest", &bundle);
    let rootfs = bundle.join("rootfs");
    assert_eq!(
        std::fs::read(rootfs.join("srv/assets/big/1.bin")).unwrap(),
        std::fs::read(assets.join("big/1.bin")).unwrap()
    );
    assert_eq!(
        std::fs::read_link(rootfs.join("srv/assets/current")).unwrap(),
        Path::new("big/0.bin")
    );
    use std::os::unix::fs::PermissionsExt;
    let srv = std::fs::metadata(rootfs.join("srv")).unwrap();
    assert_eq!(srv.permissions().mode() & 0o7777, 0o750, "the base's /srv");
}

#[test]
fn after_a_cold_build_the_next_finds_every_layer_without_opening_a_file() {
    let p = project();
    let dir = &p.dir;
    let (assets, config) = (dir.join("assets"), dir.join("config"));
    let cold = events(dir, &["build", "--store", "store", "--output", "out"]);
    assert_eq!(
        planned(&cold)["layer assets"].0,
        None,
        "keyed while written"
    );
    let keys = finished(&cold);

    let mut warm = Vec::new();
    let opened = opens(&[&assets, &config], || {
        warm = events(dir, &["build", "--store", "store", "--output", "out"]);
    });
    assert_eq!(
        opened,
        BTreeMap::new(),
        "the stat index answered for every file"
    );
    let warm_plan = planned(&warm);
    assert!(
        warm_plan
            .values()
            .all(|(key, cached)| key.is_some() && *cached != Some(false)),
        "{warm_plan:?}"
    );
    assert_eq!(
        warm_plan["layer assets"].0.as_ref(),
        Some(&keys["layer assets"].0)
    );
    let fresh = finished(&warm);
    assert_eq!(
        fresh["layer assets"],
        (keys["layer assets"].0.clone(), true)
    );
    assert_eq!(
        fresh["layer config"],
        (keys["layer config"].0.clone(), true)
    );
    // The image's key the executor computed is the one planning computes now: cached.
    assert_eq!(warm_plan["assemble-image"].1, Some(true), "{warm_plan:?}");
    // And `cargo image plan` agrees.
    let plan = cargo_image(dir)
        .args([
            "plan", "--format", "json", "--store", "store", "--output", "out",
        ])
        .run()
        .ok();
    let plan = nodes(&serde_json::from_str(&plan.stdout).unwrap());
    assert_eq!(plan, warm_plan);
}

#[test]
fn two_processes_planning_the_same_new_layer_write_it_once() {
    two_processes_write_the_new_layer_once(true);
}

/// The same, with files written just before the builds: the first build's index does not
/// vouch for them yet (the racy rule), so the second reads them to find the layer's key.
#[test]
fn two_processes_write_a_layer_of_files_written_just_now_once() {
    two_processes_write_the_new_layer_once(false);
}

/// Two builds of the project on one store, the second started once the first has begun to
/// write the assets layer (keyed while written: neither knows its key), so that it waits for
/// the first or finds its work done: one writes the layer, the other takes it from the store.
/// With `aged`, every file's mtime is an hour ago.
fn two_processes_write_the_new_layer_once(aged: bool) {
    let p = project();
    let dir = &p.dir;
    // 40 MiB more of poorly compressible assets, so that the first build is still writing
    // the layer when the second gets to it.
    let mut noise = Noise::new(0x2545_f491_4f6c_dd1d);
    for i in 0..40 {
        p.file(&format!("assets/noise/{i:02}.bin"), noise.bytes(1 << 20));
    }
    if aged {
        age(&dir.join("assets"));
    } else {
        let now = SystemTime::now();
        for file in walk(&dir.join("assets")).iter().filter(|f| f.is_file()) {
            let open = std::fs::File::options().write(true).open(file).unwrap();
            open.set_modified(now).unwrap();
        }
    }
    let build = |out: &str| {
        cargo_image(dir)
            .args(["build", "--store", "store", "--output", out])
            .args(["--message-format", "json"])
            .spawn()
    };
    let mut first = build("out-1");
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(
        first.stdout.take().expect("piped stdout"),
    ));
    let mut first_events = Vec::new();
    for line in lines.by_ref() {
        let event: Value = serde_json::from_str(&line.unwrap()).unwrap();
        let started = event["event"] == "layer-started" && event["name"] == "assets";
        first_events.push(event);
        if started {
            break;
        }
    }
    assert!(
        first_events.iter().any(|e| e["event"] == "layer-started"),
        "the first build never started the assets layer: {first_events:?}"
    );
    let second = build("out-2").wait_with_output().unwrap();
    assert!(
        second.status.success(),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );
    first_events.extend(lines.map(|l| serde_json::from_str(&l.unwrap()).unwrap()));
    let status = first.wait().unwrap();
    assert!(status.success(), "the first build failed");
    let second_events = json_events(&String::from_utf8(second.stdout).unwrap());

    // One wrote the layer, the other took it from the store: the same key and blob.
    let (written, taken) = (finished(&first_events), finished(&second_events));
    assert!(!written["layer assets"].1, "the first build wrote it");
    assert_eq!(
        taken["layer assets"],
        (written["layer assets"].0.clone(), true),
        "the second build took the first's layer"
    );
    assert!(
        of_kind(&second_events, "layer-started")
            .iter()
            .all(|e| e["name"] != "assets"),
        "the second build started writing the assets layer"
    );
    let digest = manifest_digest(&dir.join("out-1"));
    assert_eq!(manifest_digest(&dir.join("out-2")), digest);
    oci_image_tool_validate(&dir.join("out-2"), "latest");
    // And it is the image a build on its own gives.
    cargo_image(dir)
        .args([
            "build",
            "--quiet",
            "--store",
            "store-alone",
            "--output",
            "out-alone",
        ])
        .run()
        .ok();
    assert_eq!(manifest_digest(&dir.join("out-alone")), digest);
}

#[test]
fn a_build_says_it_waits_while_another_writes_its_new_layer() {
    let p = project();
    let dir = &p.dir;
    // Another build holds every lock a layer keyed while written is written under (the
    // store's `locks/pending-XX.lock` stripes).
    let locks = dir.join("store/locks");
    std::fs::create_dir_all(&locks).unwrap();
    let held: Vec<std::fs::File> = (0..=255u8)
        .map(|b| {
            let file = std::fs::File::create(locks.join(format!("pending-{b:02x}.lock"))).unwrap();
            file.lock().unwrap();
            file
        })
        .collect();
    let mut build = cargo_image(dir)
        .args(["build", "--store", "store", "--output", "out"])
        .args(["--message-format", "json"])
        .spawn();
    let stdout = build.stdout.take().expect("piped stdout");
    let (send, events) = std::sync::mpsc::channel::<Value>();
    let reader = std::thread::spawn(move || {
        for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)) {
            let _ = send.send(serde_json::from_str(&line.unwrap()).unwrap());
        }
    });
    let mut seen = Vec::new();
    let waiting = loop {
        match events.recv_timeout(Duration::from_secs(120)) {
            Ok(event) if event["event"] == "layer-waiting" => break event,
            Ok(event) => seen.push(event),
            Err(e) => panic!("no layer-waiting event ({e}); events: {seen:?}"),
        }
    };
    assert_eq!(waiting["name"], "assets");
    assert!(
        seen.iter()
            .all(|e| !(e["event"] == "layer-started" && e["name"] == "assets")),
        "{seen:?}"
    );
    // Still waiting a moment later: nothing of the layer until the lock is free.
    std::thread::sleep(Duration::from_millis(300));
    let meanwhile: Vec<Value> = events.try_iter().collect();
    assert!(
        meanwhile.iter().all(|e| e["name"] != "assets"),
        "{meanwhile:?}"
    );
    drop(held);
    let status = build.wait().unwrap();
    reader.join().unwrap();
    assert!(status.success());
    let rest: Vec<Value> = events.try_iter().collect();
    assert!(
        of_kind(&rest, "layer-started")
            .iter()
            .any(|e| e["name"] == "assets"),
        "{rest:?}"
    );
    assert!(!finished(&rest)["layer assets"].1, "written by this build");
    oci_image_tool_validate(&p.out(), "latest");
}
