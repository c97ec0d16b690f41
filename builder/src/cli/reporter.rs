//! Turns build events into what a person or a tool sees: cargo-style status lines with a
//! progress bar per building layer when stderr is a terminal, plain lines when it is not, or
//! one JSON object per event on stdout.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::Duration;

use cargo_oci_image::build::Event;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::output::{human_size, short_digest, status_line, Verbosity};

/// Receives events from any thread of a build.
pub struct Reporter {
    verbosity: Verbosity,
    json: bool,
    /// Progress bars, when stderr is a terminal.
    multi: Option<MultiProgress>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    bars: HashMap<String, ProgressBar>,
    /// For JSON: the last progress percentage reported per layer (at most one event per 1%).
    last_percent: HashMap<String, u64>,
}

impl Reporter {
    pub fn new(verbosity: Verbosity, json: bool) -> Self {
        let multi = (!json && verbosity != Verbosity::Quiet && std::io::stderr().is_terminal())
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        Reporter {
            verbosity,
            json,
            multi,
            state: Mutex::new(State::default()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Prints a status line above any progress bars.
    fn status(&self, word: &str, message: &str) {
        let line = status_line(word, message);
        match &self.multi {
            Some(multi) => {
                let _ = multi.println(line);
            }
            None => eprintln!("{line}"),
        }
    }

    pub fn event(&self, event: Event) {
        self.image_event(None, event)
    }

    /// An event of image `image` of a multi-image build: JSON gets an `image` key, status lines
    /// name the image.
    pub fn image_event(&self, image: Option<&str>, event: Event) {
        if self.json {
            self.json_event(image, event);
            return;
        }
        let event = match image {
            Some(image) => prefix_layer_names(image, event),
            None => event,
        };
        if self.verbosity == Verbosity::Quiet {
            return;
        }
        let verbose = self.verbosity == Verbosity::Verbose;
        match event {
            Event::SpecLoaded { spec, name } => {
                self.status("Building", &format!("{name} ({})", spec.display()))
            }
            Event::CargoBuild { what } => self.status("Compiling", &what),
            Event::CargoFinished {
                what,
                executable,
                strip,
                size,
                debug_info,
                symbols,
            } => {
                let mut line = format!("{what}: {}", binary_note(strip, size, debug_info, symbols));
                if verbose {
                    line.push_str(&format!(" -> {}", executable.display()));
                }
                self.status("Compiled", &line);
            }
            Event::BaseResolved {
                base,
                digest,
                layers,
                pinned_by: Some(lock),
            } => self.status(
                "Using",
                &format!("{base} -> {digest} ({lock}, {layers} layers)"),
            ),
            Event::BaseResolved {
                base,
                digest,
                layers,
                pinned_by: None,
            } => self.status(
                "Base",
                &format!("{base} ({}, {layers} layers)", short_digest(&digest)),
            ),
            Event::DebianResolved {
                suite,
                architecture,
                packages,
                pinned_by,
            } => self.status(
                "Debian",
                &format!(
                    "{suite} {architecture}: {packages} packages{}",
                    pinned_by.map_or(String::new(), |lock| format!(" ({lock})"))
                ),
            ),
            Event::Locked { path, bases } => self.status(
                "Locking",
                &format!("{} in {}", bases.join(", "), path.display()),
            ),
            Event::Plan { graph } => {
                if verbose {
                    for line in graph.to_text().lines() {
                        self.status("Plan", line);
                    }
                }
            }
            Event::LayerWaiting { name } => self.status(
                "Waiting",
                &format!("layer {name} (another build is writing it)"),
            ),
            Event::LayerStarted { name, total } => match &self.multi {
                Some(multi) => {
                    let bar = multi.add(ProgressBar::new(total));
                    bar.set_style(
                        ProgressStyle::with_template(
                            "{prefix:>12.cyan.bold} {msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
                        )
                        .unwrap_or_else(|_| ProgressStyle::default_bar())
                        .progress_chars("=> "),
                    );
                    bar.set_prefix("Building");
                    bar.set_message(format!("layer {name}"));
                    bar.enable_steady_tick(Duration::from_millis(200));
                    self.state().bars.insert(name, bar);
                }
                None => self.status("Building", &format!("layer {name} ({})", human_size(total))),
            },
            Event::LayerProgress { name, done, .. } => {
                if let Some(bar) = self.state().bars.get(&name) {
                    bar.set_position(done);
                }
            }
            Event::LayerFinished {
                name,
                digest,
                diff_id,
                size,
                cached,
                remote,
                ..
            } => {
                if let Some(bar) = self.state().bars.remove(&name) {
                    bar.finish_and_clear();
                }
                let word = if cached { "Fresh" } else { "Built" };
                let name = match &remote {
                    Some(_) => format!("{name} (remote)"),
                    None => name,
                };
                let detail = if verbose {
                    format!("{digest}, diff_id {diff_id}")
                } else {
                    short_digest(&digest)
                };
                self.status(
                    word,
                    &format!("layer {name} ({detail}, {})", human_size(size)),
                );
            }
            Event::PushBlob {
                digest,
                size,
                action,
            } => {
                if verbose {
                    self.status("Push", &format!("{digest} {action} ({})", human_size(size)));
                }
            }
            Event::Pushed {
                reference,
                uploaded_blobs,
                skipped_blobs,
                mounted_blobs,
                referrers,
                tags,
            } => self.status(
                "Pushed",
                &format!(
                    "{reference} [{}] ({uploaded_blobs} uploaded, {skipped_blobs} already there, \
                     {mounted_blobs} mounted{})",
                    tags.join(", "),
                    match referrers {
                        0 => String::new(),
                        1 => ", 1 referrer".to_string(),
                        n => format!(", {n} referrers"),
                    }
                ),
            ),
            Event::Signed {
                digest,
                identity,
                key,
                attestations,
            } => self.status(
                "Signed",
                &format!(
                    "{identity}@{digest} with {}{}",
                    key.display(),
                    if attestations.is_empty() {
                        String::new()
                    } else {
                        format!(" (attested: {})", attestations.join(", "))
                    }
                ),
            ),
            Event::SignaturesPushed { repository, tags } => self.status(
                "Pushed",
                &format!("signatures to {repository} [{}]", tags.join(", ")),
            ),
            Event::Loaded {
                engine,
                platform,
                references,
                image_id,
            } => {
                self.status(
                    "Loaded",
                    &format!(
                        "{} into {engine} ({platform}, image id {})",
                        references.join(", "),
                        short_digest(&image_id)
                    ),
                );
                if let Some(first) = references.first() {
                    self.status("Run", &format!("{engine} run --rm {first}"));
                }
            }
            Event::CacheWarning {
                repository,
                message,
            } => {
                let cache = if repository.is_empty() {
                    "the remote layer cache".to_owned()
                } else {
                    format!("remote layer cache {repository}")
                };
                super::output::warning(&format!(
                    "{cache} is not used for the rest of this build (its layers are built \
                     here): {message}"
                ));
            }
            Event::CacheExported {
                repository,
                records,
            } => self.status(
                "Cached",
                &format!("{records} new layer record(s) in {repository}"),
            ),
            Event::ImageFinished { .. } => {}
        }
    }

    fn json_event(&self, image: Option<&str>, event: Event) {
        if let Event::LayerProgress { name, done, total } = &event {
            let percent = (done * 100).checked_div(*total).unwrap_or(100);
            let mut state = self.state();
            let key = format!("{}\0{name}", image.unwrap_or_default());
            let last = state.last_percent.entry(key).or_insert(u64::MAX);
            if *last == percent {
                return;
            }
            *last = percent;
        }
        let Ok(mut value) = serde_json::to_value(&event) else {
            return;
        };
        if let (Some(image), Some(obj)) = (image, value.as_object_mut()) {
            obj.insert("image".into(), image.into());
        }
        println!("{value}");
    }

    /// Clears any bars left (after an error).
    pub fn finish(&self) {
        for (_, bar) in self.state().bars.drain() {
            bar.finish_and_clear();
        }
    }
}

/// Names the image in the layer names of an event of a multi-image build (`api: layer app`).
fn prefix_layer_names(image: &str, event: Event) -> Event {
    let short = image.rsplit('/').next().unwrap_or(image);
    let p = |name: String| format!("{short}:{name}");
    match event {
        Event::LayerWaiting { name } => Event::LayerWaiting { name: p(name) },
        Event::LayerStarted { name, total } => Event::LayerStarted {
            name: p(name),
            total,
        },
        Event::LayerProgress { name, done, total } => Event::LayerProgress {
            name: p(name),
            done,
            total,
        },
        Event::LayerFinished {
            name,
            key,
            digest,
            diff_id,
            size,
            media_type,
            cached,
            remote,
        } => Event::LayerFinished {
            name: p(name),
            key,
            digest,
            diff_id,
            size,
            media_type,
            cached,
            remote,
        },
        other => other,
    }
}

/// What a finished cargo build says about its binary: its size and how stripped it is, e.g.
/// `5.2 MiB, stripped` or `33.1 MiB, 27.9 MiB of it debug info and symbols (strip = false)`.
fn binary_note(strip: &str, size: u64, debug_info: u64, symbols: u64) -> String {
    let left = debug_info + symbols;
    let mut note = human_size(size);
    match (strip, left) {
        ("symbols", 0) => note.push_str(", stripped"),
        (_, 0) => note.push_str(&format!(", no debug info or symbols (strip = {strip:?})")),
        (_, left) => note.push_str(&format!(
            ", {} of it debug info and symbols (strip = {strip:?}; \"symbols\" removes them)",
            human_size(left)
        )),
    }
    note
}
