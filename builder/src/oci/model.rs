//! The image model: the builders of the three JSON documents of an image (config, manifest,
//! index entries). [`Digest`] and [`Platform`] live in [`crate::types`] and are re-exported
//! here; the runtime config applied on top of a base comes in as `oci-spec`'s [`Config`], so
//! this module knows nothing of the spec (the spec's `ImageConfig` converts into one).
//!
//! Everything here is pure: values in, values out, no files. The layout sink
//! ([`super::LayoutWriter`]) and source ([`super::Layout`]) move the results to and from disk
//! as [canonical JSON](super::to_canonical_json).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use oci_spec::image::{
    Arch, Config, Descriptor, History, ImageConfiguration, ImageIndex, ImageIndexBuilder,
    ImageManifest, ImageManifestBuilder, MediaType, Os, RootFs, ANNOTATION_REF_NAME,
};

use super::Error;
use crate::types::{Compression, LayerBlob};
pub use crate::types::{Digest, Platform};

/// The OCI image spec's schema version for manifests and indexes.
pub const SCHEMA_VERSION: u32 = 2;
/// Media type of a Docker v2 schema 2 manifest (read from base images, never written).
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Media type of a Docker manifest list (read from base images, never written).
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Media type of a Docker image config (read from base images, never written).
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
/// Media type of a Docker gzip layer (read from base images, never written).
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
/// Media type of a Docker foreign (non-distributable) gzip layer.
pub const DOCKER_FOREIGN_LAYER_GZIP: &str =
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";

/// `created_by` of the history entry of our layer `name`. Names only the layer: no host, user
/// or path, so the config's digest does not depend on who built it.
pub fn history_created_by(layer_name: &str) -> String {
    format!("cargo-image layer {layer_name}")
}

/// Builds the image config of an image: `base`'s config (if any) with `config` (ours: the
/// runtime part of an image config, as the spec's `ImageConfig` converts into) applied on top
/// the way a Dockerfile's instructions apply on top of its `FROM`:
///
/// - `env` (`NAME=value` entries): merged by name, ours win; written as `NAME=value` sorted by
///   name;
/// - `entrypoint`: ours replaces the base's and resets the base's `cmd` (unless we set `cmd`);
///   an empty list clears it;
/// - `cmd`: ours replaces the base's; an empty list clears it;
/// - `labels`: merged, ours win;
/// - `exposed_ports`, `volumes`: union, sorted;
/// - `working_dir`, `user`, `stop_signal`: ours when set, else the base's.
///
/// Other fields of `config` are not used.
///
/// `rootfs.diff_ids` is the base's followed by `diff_ids`; `history` is the base's followed by
/// one entry per layer of ours (`layer_names[i]` names the layer of `diff_ids[i]`), each with
/// `created` = [`rfc3339`]`(created_epoch)` and `created_by` = [`history_created_by`]. The
/// config's own `created` is the same time; `os`/`architecture`/`variant` come from `platform`.
///
/// # Panics
/// When `diff_ids` and `layer_names` differ in length (a caller bug).
pub fn image_config(
    platform: &Platform,
    base: Option<&ImageConfiguration>,
    config: impl Into<Config>,
    diff_ids: &[String],
    layer_names: &[String],
    created_epoch: u64,
) -> ImageConfiguration {
    assert_eq!(
        diff_ids.len(),
        layer_names.len(),
        "one layer name per diff_id"
    );
    let ours: Config = config.into();
    let created = rfc3339(created_epoch);
    let base_config = base.and_then(|b| b.config().as_ref());
    let base_field = |f: fn(&Config) -> Option<Vec<String>>| base_config.and_then(f);

    // Env: merged by name; an entry without `=` (rare, but Docker keeps it) keeps its form.
    let mut env: BTreeMap<String, Option<String>> = BTreeMap::new();
    let base_env = base_field(|c| c.env().clone()).unwrap_or_default();
    for entry in base_env
        .into_iter()
        .chain(ours.env().clone().unwrap_or_default())
    {
        match entry.split_once('=') {
            Some((name, value)) => env.insert(name.to_string(), Some(value.to_string())),
            None => env.insert(entry, None),
        };
    }
    let env: Vec<String> = env
        .into_iter()
        .map(|(name, value)| match value {
            Some(value) => format!("{name}={value}"),
            None => name,
        })
        .collect();

    let (entrypoint, cmd) = match ours.entrypoint() {
        Some(entrypoint) => (Some(entrypoint.clone()), ours.cmd().clone()),
        None => (
            base_field(|c| c.entrypoint().clone()),
            ours.cmd()
                .clone()
                .or_else(|| base_field(|c| c.cmd().clone())),
        ),
    };
    let non_empty = |v: Option<Vec<String>>| v.filter(|v| !v.is_empty());

    let mut labels: BTreeMap<String, String> = base_config
        .and_then(|c| c.labels().clone())
        .unwrap_or_default()
        .into_iter()
        .collect();
    labels.extend(ours.labels().clone().unwrap_or_default());

    let union = |base: Option<Vec<String>>, ours: Option<Vec<String>>| -> Option<Vec<String>> {
        let set: BTreeSet<String> = base
            .unwrap_or_default()
            .into_iter()
            .chain(ours.unwrap_or_default())
            .collect();
        (!set.is_empty()).then(|| set.into_iter().collect())
    };
    let exposed_ports = union(
        base_field(|c| c.exposed_ports().clone()),
        ours.exposed_ports().clone(),
    );
    let volumes = union(base_field(|c| c.volumes().clone()), ours.volumes().clone());

    let inherit = |ours: &Option<String>, base: fn(&Config) -> Option<String>| {
        ours.clone().or_else(|| base_config.and_then(base))
    };

    let mut runtime = Config::default();
    runtime.set_env((!env.is_empty()).then_some(env));
    runtime.set_entrypoint(non_empty(entrypoint));
    runtime.set_cmd(non_empty(cmd));
    runtime.set_labels((!labels.is_empty()).then(|| labels.into_iter().collect::<HashMap<_, _>>()));
    runtime.set_exposed_ports(exposed_ports);
    runtime.set_volumes(volumes);
    runtime.set_working_dir(inherit(ours.working_dir(), |c| c.working_dir().clone()));
    runtime.set_user(inherit(ours.user(), |c| c.user().clone()));
    runtime.set_stop_signal(inherit(ours.stop_signal(), |c| c.stop_signal().clone()));

    let mut diff = base
        .map(|b| b.rootfs().diff_ids().clone())
        .unwrap_or_default();
    diff.extend(diff_ids.iter().cloned());
    let mut rootfs = RootFs::default();
    rootfs.set_diff_ids(diff);

    let mut history = base.and_then(|b| b.history().clone()).unwrap_or_default();
    history.extend(layer_names.iter().map(|name| {
        let mut entry = History::default();
        entry.set_created(Some(created.clone()));
        entry.set_created_by(Some(history_created_by(name)));
        entry
    }));

    let mut image = ImageConfiguration::default();
    image.set_created(Some(created));
    image.set_author(base.and_then(|b| b.author().clone()));
    image.set_os(Os::from(platform.os.as_str()));
    image.set_architecture(Arch::from(platform.architecture.as_str()));
    image.set_variant(platform.variant.clone());
    image.set_config(Some(runtime));
    image.set_rootfs(rootfs);
    image.set_history((!history.is_empty()).then_some(history));
    image
}

/// A descriptor of a blob: media type, digest, size; no annotations.
pub fn descriptor(media_type: MediaType, digest: &Digest, size: u64) -> Descriptor {
    Descriptor::new(media_type, size, digest.to_oci())
}

/// The manifest descriptor of one of our layer blobs.
pub fn layer_descriptor(layer: &LayerBlob) -> Result<Descriptor, Error> {
    let digest = Digest::parse(&layer.digest)?;
    Ok(descriptor(
        MediaType::from(layer.media_type.as_str()),
        &digest,
        layer.size,
    ))
}

/// Builds an image manifest: `schemaVersion` 2, the OCI manifest media type, the config
/// descriptor, the base's layer descriptors exactly as the base had them followed by `layers`,
/// and `annotations` (omitted when empty; written sorted by [`super::to_canonical_json`]).
pub fn image_manifest(
    config: Descriptor,
    base: Option<&ImageManifest>,
    layers: &[Descriptor],
    annotations: &BTreeMap<String, String>,
) -> ImageManifest {
    let mut all = base.map(|b| b.layers().clone()).unwrap_or_default();
    all.extend(layers.iter().cloned());
    let mut builder = ImageManifestBuilder::default()
        .schema_version(SCHEMA_VERSION)
        .media_type(MediaType::ImageManifest)
        .config(config)
        .layers(all);
    if !annotations.is_empty() {
        builder = builder.annotations(annotations.clone().into_iter().collect::<HashMap<_, _>>());
    }
    builder
        .build()
        .expect("every required manifest field is set")
}

/// The `index.json` entries for an image: one descriptor of `manifest` per tag, each with the
/// `org.opencontainers.image.ref.name` annotation (and `platform` when given), in tag order.
/// No tags gives one untagged entry.
pub fn index_entries(
    manifest: &Descriptor,
    platform: Option<&Platform>,
    tags: &[String],
) -> Vec<Descriptor> {
    let entry = |tag: Option<&String>| {
        let mut d = manifest.clone();
        d.set_annotations(
            tag.map(|t| HashMap::from([(ANNOTATION_REF_NAME.to_string(), t.clone())])),
        );
        d.set_platform(platform.map(Platform::to_oci));
        d
    };
    if tags.is_empty() {
        vec![entry(None)]
    } else {
        tags.iter().map(|t| entry(Some(t))).collect()
    }
}

/// An OCI image index (`schemaVersion` 2, the OCI index media type) of `manifests`: the shape of
/// a layout's `index.json` and of a multi-platform image.
pub fn image_index(manifests: Vec<Descriptor>) -> ImageIndex {
    ImageIndexBuilder::default()
        .schema_version(SCHEMA_VERSION)
        .media_type(MediaType::ImageIndex)
        .manifests(manifests)
        .build()
        .expect("every required index field is set")
}

/// The image index of a multi-platform image: `manifests` (one per platform, each descriptor
/// with its `platform`) in the given order, with the image's `annotations` (omitted when empty).
pub fn platform_index(
    manifests: Vec<Descriptor>,
    annotations: &BTreeMap<String, String>,
) -> ImageIndex {
    let mut index = image_index(manifests);
    if !annotations.is_empty() {
        index.set_annotations(Some(
            annotations.clone().into_iter().collect::<HashMap<_, _>>(),
        ));
    }
    index
}

/// The compression of a layer blob of `media_type`, or `None` when it is not a layer type we
/// can unpack. Accepts the OCI layer types (plain, gzip, zstd, and their non-distributable
/// forms) and Docker's gzip layers.
pub fn layer_compression(media_type: &MediaType) -> Option<Compression> {
    match media_type {
        MediaType::ImageLayer | MediaType::ImageLayerNonDistributable => Some(Compression::None),
        MediaType::ImageLayerGzip | MediaType::ImageLayerNonDistributableGzip => {
            Some(Compression::Gzip)
        }
        MediaType::ImageLayerZstd | MediaType::ImageLayerNonDistributableZstd => {
            Some(Compression::Zstd)
        }
        MediaType::Other(m) if m == DOCKER_LAYER_GZIP || m == DOCKER_FOREIGN_LAYER_GZIP => {
            Some(Compression::Gzip)
        }
        _ => None,
    }
}

/// The `org.opencontainers.image.ref.name` of an index entry.
pub fn ref_name(descriptor: &Descriptor) -> Option<&str> {
    descriptor
        .annotations()
        .as_ref()
        .and_then(|a| a.get(ANNOTATION_REF_NAME))
        .map(String::as_str)
}

/// The time `epoch` (seconds since 1970-01-01T00:00:00Z) as RFC 3339 in UTC with a `Z` and no
/// fractional seconds: `rfc3339(0) == "1970-01-01T00:00:00Z"`.
pub fn rfc3339(epoch: u64) -> String {
    let days = epoch / 86_400;
    let secs = epoch % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// The seconds since the epoch of an RFC 3339 time (`2024-05-01T12:00:00Z`, fractional
/// seconds dropped, a `+HH:MM`/`-HH:MM` offset applied); `None` when it is not one or is
/// before 1970.
pub fn epoch_of_rfc3339(time: &str) -> Option<u64> {
    let b = time.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let s = time.get(r)?;
        s.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| s.parse().ok())?
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if b[13] != b':' || b[16] != b':' || !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    let mut rest = &time[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        rest = frac.trim_start_matches(|c: char| c.is_ascii_digit());
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ if rest.len() == 6 && rest.as_bytes()[3] == b':' => {
            let sign = match rest.as_bytes()[0] {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            sign * (num(20..22)? * 3600 + num(23..25)? * 60)
        }
        _ => return None,
    };
    // Howard Hinnant's `days_from_civil`.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset;
    u64::try_from(secs).ok()
}

/// Proleptic Gregorian (year, month, day) of the day `days` after 1970-01-01
/// (Howard Hinnant's `civil_from_days`, for non-negative day counts).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    // Shift the epoch to 0000-03-01 so that leap days fall at the end of a year.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097; // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11], March = 0
    let day = doy - (153 * mp + 2) / 5 + 1; // [1, 31]
    let month = if mp < 10 { mp + 3 } else { mp - 9 }; // [1, 12]
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::to_canonical_json;
    use oci_spec::image::ConfigBuilder;

    #[test]
    fn rfc3339_times_read_back() {
        for epoch in [0, 1, 951_782_400, 1_700_000_000, 4_102_444_800] {
            assert_eq!(epoch_of_rfc3339(&rfc3339(epoch)), Some(epoch));
        }
        assert_eq!(
            epoch_of_rfc3339("2023-11-14T22:13:20.123456789Z"),
            Some(1_700_000_000)
        );
        assert_eq!(
            epoch_of_rfc3339("2023-11-15T00:13:20+02:00"),
            Some(1_700_000_000)
        );
        for bad in [
            "",
            "2023-11-14",
            "2023-11-14T22:13:20",
            "1969-12-31T23:59:59Z",
            "x023-11-14T22:13:20Z",
        ] {
            assert_eq!(epoch_of_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn platform_index_is_canonical_with_platforms_and_annotations() {
        let manifest = |hex: char, platform: &str| {
            let mut d = descriptor(
                MediaType::ImageManifest,
                &Digest::from_hex(&hex.to_string().repeat(64)).unwrap(),
                100,
            );
            d.set_platform(Some(Platform::parse(platform).unwrap().to_oci()));
            d
        };
        let annotations = BTreeMap::from([(
            "org.opencontainers.image.created".to_string(),
            "1970-01-01T00:00:00Z".to_string(),
        )]);
        let index = platform_index(
            vec![manifest('a', "linux/amd64"), manifest('b', "linux/arm/v7")],
            &annotations,
        );
        let json = String::from_utf8(to_canonical_json(&index).unwrap()).unwrap();
        let a = "a".repeat(64);
        let b = "b".repeat(64);
        assert_eq!(
            json,
            format!(
                r#"{{"annotations":{{"org.opencontainers.image.created":"1970-01-01T00:00:00Z"}},"manifests":[{{"digest":"sha256:{a}","mediaType":"application/vnd.oci.image.manifest.v1+json","platform":{{"architecture":"amd64","os":"linux"}},"size":100}},{{"digest":"sha256:{b}","mediaType":"application/vnd.oci.image.manifest.v1+json","platform":{{"architecture":"arm","os":"linux","variant":"v7"}},"size":100}}],"mediaType":"application/vnd.oci.image.index.v1+json","schemaVersion":2}}"#
            )
        );
        let bare = platform_index(vec![manifest('a', "linux/amd64")], &BTreeMap::new());
        assert!(bare.annotations().is_none());
    }

    #[test]
    fn rfc3339_vectors() {
        let cases = [
            (0, "1970-01-01T00:00:00Z"),
            (1, "1970-01-01T00:00:01Z"),
            (86_399, "1970-01-01T23:59:59Z"),
            (86_400, "1970-01-02T00:00:00Z"),
            (951_782_400, "2000-02-29T00:00:00Z"), // leap year divisible by 400
            (951_868_800, "2000-03-01T00:00:00Z"),
            (4_107_542_400, "2100-03-01T00:00:00Z"), // 2100 is not a leap year
            (4_107_456_000, "2100-02-28T00:00:00Z"),
            (1_078_012_800, "2004-02-29T00:00:00Z"),
            (1_700_000_000, "2023-11-14T22:13:20Z"),
            (1_709_251_199, "2024-02-29T23:59:59Z"),
            (1_709_251_200, "2024-03-01T00:00:00Z"),
            (1_735_689_599, "2024-12-31T23:59:59Z"),
            (2_147_483_647, "2038-01-19T03:14:07Z"),
            (2_147_483_648, "2038-01-19T03:14:08Z"),
            (4_102_444_800, "2100-01-01T00:00:00Z"),
            (253_402_300_799, "9999-12-31T23:59:59Z"),
        ];
        for (epoch, expected) in cases {
            assert_eq!(rfc3339(epoch), expected, "epoch {epoch}");
        }
    }

    #[test]
    fn civil_from_days_is_continuous() {
        // Walk 1970..2500 day by day: each day follows the previous one in the calendar.
        let mut prev = civil_from_days(0);
        assert_eq!(prev, (1970, 1, 1));
        for days in 1..(530 * 366) {
            let (y, m, d) = civil_from_days(days);
            let (py, pm, pd) = prev;
            let leap = (py % 4 == 0 && py % 100 != 0) || py % 400 == 0;
            let month_len = match pm {
                2 if leap => 29,
                2 => 28,
                4 | 6 | 9 | 11 => 30,
                _ => 31,
            };
            let expected = if pd < month_len {
                (py, pm, pd + 1)
            } else if pm < 12 {
                (py, pm + 1, 1)
            } else {
                (py + 1, 1, 1)
            };
            assert_eq!((y, m, d), expected, "day {days}");
            prev = (y, m, d);
        }
    }

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    fn base_image() -> ImageConfiguration {
        let mut config = Config::default();
        config.set_env(Some(strings(&["PATH=/usr/bin:/bin", "LANG=C", "BARE"])));
        config.set_entrypoint(Some(strings(&["/docker-entrypoint.sh"])));
        config.set_cmd(Some(strings(&["nginx", "-g", "daemon off;"])));
        config.set_labels(Some(HashMap::from([
            ("maintainer".to_string(), "base".to_string()),
            ("keep".to_string(), "yes".to_string()),
        ])));
        config.set_exposed_ports(Some(strings(&["80/tcp"])));
        config.set_volumes(Some(strings(&["/var/cache"])));
        config.set_working_dir(Some("/base".into()));
        config.set_user(Some("101".into()));
        config.set_stop_signal(Some("SIGQUIT".into()));
        let mut image = ImageConfiguration::default();
        image.set_config(Some(config));
        image.set_author(Some("base author".into()));
        let mut rootfs = RootFs::default();
        rootfs.set_diff_ids(strings(&["sha256:b1", "sha256:b2"]));
        image.set_rootfs(rootfs);
        let mut h = History::default();
        h.set_created_by(Some("base step".into()));
        image.set_history(Some(vec![h.clone(), h]));
        image
    }

    fn cfg(image: &ImageConfiguration) -> &Config {
        image.config().as_ref().unwrap()
    }

    #[test]
    fn scratch_config() {
        let ours = ConfigBuilder::default()
            .entrypoint(strings(&["/hello"]))
            .env(strings(&["B=2", "A=1"]))
            .build()
            .unwrap();
        let image = image_config(
            &Platform::linux_amd64(),
            None,
            ours,
            &strings(&["sha256:d1"]),
            &strings(&["app"]),
            0,
        );
        let json = String::from_utf8(to_canonical_json(&image).unwrap()).unwrap();
        assert_eq!(
            json,
            concat!(
                r#"{"architecture":"amd64","config":{"Entrypoint":["/hello"],"Env":["A=1","B=2"]},"#,
                r#""created":"1970-01-01T00:00:00Z","history":[{"created":"1970-01-01T00:00:00Z","#,
                r#""created_by":"cargo-image layer app"}],"os":"linux","#,
                r#""rootfs":{"diff_ids":["sha256:d1"],"type":"layers"}}"#
            )
        );
    }

    #[test]
    fn inherits_base_with_from_semantics() {
        let base = base_image();
        let ours = ConfigBuilder::default()
            .env(strings(&["PATH=/app:/usr/bin", "ZED=z"]))
            .labels(HashMap::from([("maintainer".into(), "us".into())]))
            .exposed_ports(strings(&["8080/tcp", "80/tcp"]))
            .volumes(strings(&["/data"]))
            .working_dir("/app")
            .build()
            .unwrap();
        let image = image_config(
            &Platform::linux_amd64(),
            Some(&base),
            ours,
            &strings(&["sha256:o1"]),
            &strings(&["app"]),
            1_700_000_000,
        );
        let c = cfg(&image);
        assert_eq!(
            c.env().clone().unwrap(),
            strings(&["BARE", "LANG=C", "PATH=/app:/usr/bin", "ZED=z"])
        );
        // No entrypoint/cmd of ours: both inherited.
        assert_eq!(
            c.entrypoint().clone().unwrap(),
            strings(&["/docker-entrypoint.sh"])
        );
        assert_eq!(
            c.cmd().clone().unwrap(),
            strings(&["nginx", "-g", "daemon off;"])
        );
        let labels = c.labels().clone().unwrap();
        assert_eq!(labels["maintainer"], "us");
        assert_eq!(labels["keep"], "yes");
        // Sorted by bytes: '/' < '8'.
        assert_eq!(
            c.exposed_ports().clone().unwrap(),
            strings(&["80/tcp", "8080/tcp"])
        );
        assert_eq!(
            c.volumes().clone().unwrap(),
            strings(&["/data", "/var/cache"])
        );
        assert_eq!(c.working_dir().as_deref(), Some("/app"));
        assert_eq!(c.user().as_deref(), Some("101"));
        assert_eq!(c.stop_signal().as_deref(), Some("SIGQUIT"));
        assert_eq!(
            image.rootfs().diff_ids(),
            &strings(&["sha256:b1", "sha256:b2", "sha256:o1"])
        );
        let history = image.history().clone().unwrap();
        assert_eq!(history.len(), 3);
        assert_eq!(history[0].created_by().as_deref(), Some("base step"));
        assert_eq!(
            history[2].created_by().as_deref(),
            Some("cargo-image layer app")
        );
        assert_eq!(
            history[2].created().as_deref(),
            Some("2023-11-14T22:13:20Z")
        );
        assert_eq!(image.created().as_deref(), Some("2023-11-14T22:13:20Z"));
        assert_eq!(image.author().as_deref(), Some("base author"));
    }

    #[test]
    fn our_entrypoint_resets_base_cmd() {
        let base = base_image();
        let ours = ConfigBuilder::default()
            .entrypoint(strings(&["/app"]))
            .user("1000:1000")
            .stop_signal("SIGTERM")
            .build()
            .unwrap();
        let image = image_config(&Platform::linux_amd64(), Some(&base), ours, &[], &[], 0);
        let c = cfg(&image);
        assert_eq!(c.entrypoint().clone().unwrap(), strings(&["/app"]));
        assert_eq!(c.cmd(), &None, "base cmd must be reset by our entrypoint");
        assert_eq!(c.user().as_deref(), Some("1000:1000"));
        assert_eq!(c.stop_signal().as_deref(), Some("SIGTERM"));

        // ... unless we set cmd too.
        let ours = ConfigBuilder::default()
            .entrypoint(strings(&["/app"]))
            .cmd(strings(&["--serve"]))
            .build()
            .unwrap();
        let image = image_config(&Platform::linux_amd64(), Some(&base), ours, &[], &[], 0);
        assert_eq!(cfg(&image).cmd().clone().unwrap(), strings(&["--serve"]));

        // Our cmd alone keeps the base entrypoint and replaces its cmd.
        let ours = ConfigBuilder::default()
            .cmd(strings(&["-v"]))
            .build()
            .unwrap();
        let image = image_config(&Platform::linux_amd64(), Some(&base), ours, &[], &[], 0);
        assert_eq!(
            cfg(&image).entrypoint().clone().unwrap(),
            strings(&["/docker-entrypoint.sh"])
        );
        assert_eq!(cfg(&image).cmd().clone().unwrap(), strings(&["-v"]));

        // An empty entrypoint clears both.
        let ours = ConfigBuilder::default()
            .entrypoint(Vec::<String>::new())
            .build()
            .unwrap();
        let image = image_config(&Platform::linux_amd64(), Some(&base), ours, &[], &[], 0);
        assert_eq!(
            (cfg(&image).entrypoint(), cfg(&image).cmd()),
            (&None, &None)
        );
    }

    #[test]
    fn manifest_and_index_entries() {
        let config = descriptor(MediaType::ImageConfig, &Digest::of(b"{}"), 2);
        let mut base = image_manifest(
            config.clone(),
            None,
            &[descriptor(
                MediaType::Other(DOCKER_LAYER_GZIP.into()),
                &Digest::of(b"b"),
                1,
            )],
            &BTreeMap::new(),
        );
        base.set_annotations(None);
        let ours = descriptor(MediaType::ImageLayerGzip, &Digest::of(b"o"), 1);
        let annotations = BTreeMap::from([
            (
                "org.opencontainers.image.title".to_string(),
                "t".to_string(),
            ),
            ("a".to_string(), "1".to_string()),
        ]);
        let manifest = image_manifest(config, Some(&base), &[ours], &annotations);
        let json = String::from_utf8(to_canonical_json(&manifest).unwrap()).unwrap();
        assert!(
            json.starts_with(
                r#"{"annotations":{"a":"1","org.opencontainers.image.title":"t"},"config":"#
            ),
            "{json}"
        );
        assert!(
            json.ends_with(
                r#""mediaType":"application/vnd.oci.image.manifest.v1+json","schemaVersion":2}"#
            ),
            "{json}"
        );
        let layers: Vec<String> = manifest
            .layers()
            .iter()
            .map(|l| l.media_type().to_string())
            .collect();
        assert_eq!(
            layers,
            [
                DOCKER_LAYER_GZIP,
                "application/vnd.oci.image.layer.v1.tar+gzip"
            ]
        );

        let md = descriptor(
            MediaType::ImageManifest,
            &Digest::of(json.as_bytes()),
            json.len() as u64,
        );
        let entries = index_entries(
            &md,
            Some(&Platform::linux_amd64()),
            &strings(&["1.0", "latest"]),
        );
        assert_eq!(entries.len(), 2);
        assert_eq!(ref_name(&entries[0]), Some("1.0"));
        assert_eq!(ref_name(&entries[1]), Some("latest"));
        assert!(entries.iter().all(|e| e.digest() == md.digest()));
        let index = String::from_utf8(to_canonical_json(&image_index(entries)).unwrap()).unwrap();
        assert!(
            index.contains(r#""platform":{"architecture":"amd64","os":"linux"}"#),
            "{index}"
        );
        assert!(
            index.starts_with(
                r#"{"manifests":[{"annotations":{"org.opencontainers.image.ref.name":"1.0"}"#
            ),
            "{index}"
        );
    }
}
