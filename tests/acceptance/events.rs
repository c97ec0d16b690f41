//! The JSON event stream tools rely on: the `plan` event (the whole graph) comes before any
//! layer is built, the keys `cargo image plan` prints are the keys the build then uses (for
//! every example), a finished build leaves every node cached, and a failed build or plan ends
//! its stream with exactly one `error` event.

use std::collections::BTreeSet;
use std::path::Path;

use cargo_oci_image_test_support::*;

/// Runs `cargo-image ARGS --message-format json` in `dir`; returns its run and its events.
fn events(dir: &Path, args: &[&str]) -> (Run, Vec<Value>) {
    let r = cargo_image(dir)
        .args(args)
        .args(["--message-format", "json"])
        .run();
    let events = json_events(&r.stdout);
    (r, events)
}

/// Every node key of every `plan` event.
fn plan_keys(events: &[Value]) -> BTreeSet<String> {
    plans(events)
        .flat_map(|graph| graph["nodes"].as_array().expect("nodes").iter())
        .map(|node| node["key"].as_str().expect("a key").to_string())
        .collect()
}

fn plans(events: &[Value]) -> impl Iterator<Item = &Value> {
    events
        .iter()
        .filter(|e| e["event"] == "plan")
        .map(|e| &e["graph"])
}

/// Plans the example, builds it, plans it again: the plan comes before the first layer event,
/// the build uses exactly the planned keys, and afterwards every node is cached.
fn plan_agrees_with_the_build(example: &str, args: &[&str]) {
    let (_tmp, dir) = example_copy(example);
    let plan_args = [&["plan"], args].concat();
    let build_args = [&["build", "--quiet"], args].concat();

    let (r, before) = events(&dir, &plan_args);
    assert_eq!(r.code, Some(0), "plan failed:\n{}", r.stderr);
    let planned = plan_keys(&before);
    assert!(!planned.is_empty(), "no plan event: {}", r.stdout);
    assert!(
        plans(&before)
            .flat_map(|g| g["nodes"].as_array().unwrap())
            .any(|n| n["cached"] == false),
        "a fresh copy has nothing cached: {}",
        r.stdout
    );

    let (r, built) = events(&dir, &build_args);
    assert_eq!(r.code, Some(0), "build failed:\n{}", r.stderr);
    // Per image (a workspace builds several in parallel, each with its own plan).
    let images: BTreeSet<&str> = built.iter().filter_map(|e| e["image"].as_str()).collect();
    for image in images
        .iter()
        .map(|i| Some(*i))
        .chain(images.is_empty().then_some(None))
    {
        let of_image: Vec<&Value> = built
            .iter()
            .filter(|e| e["image"].as_str() == image)
            .collect();
        let first_layer = of_image
            .iter()
            .position(|e| e["event"].as_str().unwrap().starts_with("layer-"))
            .expect("layer events");
        let plan = of_image
            .iter()
            .position(|e| e["event"] == "plan")
            .expect("a plan event");
        assert!(
            plan < first_layer,
            "the plan of {image:?} comes after its layer event #{first_layer}: {}",
            r.stdout
        );
    }
    assert_eq!(
        plan_keys(&built),
        planned,
        "the build used other keys than `plan` printed"
    );
    assert!(!built.iter().any(|e| e["event"] == "error"), "{}", r.stdout);

    let (r, after) = events(&dir, &plan_args);
    assert_eq!(r.code, Some(0), "plan failed:\n{}", r.stderr);
    assert_eq!(plan_keys(&after), planned, "keys changed by building");
    let uncached: Vec<&Value> = plans(&after)
        .flat_map(|g| g["nodes"].as_array().unwrap())
        .filter(|n| n["cached"] == false)
        .collect();
    assert!(
        uncached.is_empty(),
        "not cached after the build: {uncached:?}"
    );
}

#[test]
fn plan_and_build_agree_on_hello() {
    plan_agrees_with_the_build("hello", &[]);
}

#[test]
fn plan_and_build_agree_on_static_site() {
    plan_agrees_with_the_build("static-site", &[]);
}

#[test]
fn plan_and_build_agree_on_import_tar() {
    plan_agrees_with_the_build("import-tar", &[]);
}

#[test]
fn plan_and_build_agree_on_multi_stage() {
    plan_agrees_with_the_build("multi-stage", &[]);
}

#[test]
fn plan_and_build_agree_on_multi_arch() {
    require("aarch64-linux-gnu-gcc");
    plan_agrees_with_the_build("multi-arch", &[]);
}

#[test]
fn plan_and_build_agree_on_workspace() {
    plan_agrees_with_the_build("workspace", &["--workspace"]);
}

/// Each image's plan per image: `plan --workspace` plans the images together, and every `plan`
/// event names its image, with the keys the build of that image then uses.
#[test]
fn workspace_plans_name_their_images() {
    let (_tmp, dir) = example_copy("workspace");
    let per_image = |events: &[Value]| -> std::collections::BTreeMap<String, BTreeSet<String>> {
        let mut by_image = std::collections::BTreeMap::new();
        for e in events.iter().filter(|e| e["event"] == "plan") {
            let image = e["image"].as_str().expect("a plan event names its image");
            let keys: &mut BTreeSet<String> = by_image.entry(image.to_string()).or_default();
            keys.extend(plan_keys(std::slice::from_ref(e)));
        }
        by_image
    };
    let (r, planned) = events(&dir, &["plan", "--workspace"]);
    assert_eq!(r.code, Some(0), "plan failed:\n{}", r.stderr);
    let planned = per_image(&planned);
    assert!(planned.len() > 1, "one plan per image: {planned:?}");
    let (r, built) = events(&dir, &["build", "--quiet", "--workspace"]);
    assert_eq!(r.code, Some(0), "build failed:\n{}", r.stderr);
    assert_eq!(
        per_image(&built),
        planned,
        "each image's plan is its build's"
    );
}

/// The stream of a failed command ends with its one `error` event, and the command fails.
fn ends_with_one_error(r: &Run, events: &[Value]) -> Value {
    assert_ne!(r.code, Some(0), "expected a failure:\n{}", r.stdout);
    let errors: Vec<&Value> = events.iter().filter(|e| e["event"] == "error").collect();
    assert_eq!(errors.len(), 1, "one error event: {}", r.stdout);
    let last = events.last().expect("events");
    assert_eq!(
        last["event"], "error",
        "the stream ends with it: {}",
        r.stdout
    );
    assert!(
        !last["message"].as_str().unwrap_or_default().is_empty(),
        "{last}"
    );
    last.clone()
}

#[test]
fn a_bad_spec_ends_the_stream_with_an_error_event_that_points_at_the_key() {
    let tmp = TempDir::new().unwrap();
    std::fs::write(
        tmp.path().join("image.toml"),
        "name = \"x\"\n\n[[layer]]\nnme = \"a\"\n",
    )
    .unwrap();
    for command in ["build", "plan"] {
        let (r, events) = events(tmp.path(), &[command]);
        let error = ends_with_one_error(&r, &events);
        assert_eq!(error["line"], 4, "{error}");
        assert_eq!(error["key"], "layer[0].nme", "{error}");
        assert!(
            error["file"].as_str().unwrap().ends_with("image.toml"),
            "{error}"
        );
        assert!(
            error["help"].as_str().unwrap().contains("`name`"),
            "{error}"
        );
    }
}

#[test]
fn a_failing_cargo_build_ends_the_stream_with_an_error_event() {
    let (_tmp, dir) = example_copy("hello");
    std::fs::write(dir.join("src/main.rs"), "fn main() { this is not rust }\n").unwrap();
    let (r, events) = events(&dir, &["build"]);
    let error = ends_with_one_error(&r, &events);
    let text = error.to_string();
    assert!(text.contains("cargo"), "names cargo: {text}");
    assert!(
        events.iter().any(|e| e["event"] == "cargo-build"),
        "the cargo build was started: {}",
        r.stdout
    );
}

#[test]
fn an_unreachable_registry_ends_the_stream_with_an_error_event() {
    // A port nothing listens on: bound, then closed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let tmp = TempDir::new().unwrap();
    std::fs::write(
        tmp.path().join("image.toml"),
        format!("name = \"x\"\nfrom = \"127.0.0.1:{port}/nothing:latest\"\n"),
    )
    .unwrap();
    let (r, events) = events(tmp.path(), &["build"]);
    let error = ends_with_one_error(&r, &events);
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains(&format!("127.0.0.1:{port}/nothing:latest")),
        "names the reference: {error}"
    );
    // People get the same causes on stderr, each said once.
    let lines: Vec<&str> = r.stderr.lines().map(str::trim).collect();
    for cause in error["causes"].as_array().unwrap() {
        let cause = cause.as_str().unwrap();
        let said = lines.iter().filter(|l| l.ends_with(cause)).count();
        assert_eq!(said, 1, "`{cause}` said {said} times:\n{}", r.stderr);
    }
}
