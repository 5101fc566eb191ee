//! Loading a plugin: read the bytes once, check the pin, compile exactly
//! those bytes (or load them from the authenticated compile cache,
//! `cache`), refuse forbidden imports, and ask the plugin for its tools.
//! `inspect` reads a component without a manifest, for tool authors.

mod cache;
mod inspect;
mod tool_pin;

pub(crate) use cache::CompileCache;
pub use inspect::{ImportStatus, InspectedTool, Inspection, inspect};
pub use tool_pin::{tool_diff, tool_list_sha256 as tool_list_hash};

use crate::arguments::Schema;
use crate::error::Error;
use crate::hash::sha256_hex;
use crate::policy::{self, Effect, PluginPolicy};
use crate::sandbox::{OpenDirs, Prepared, Sandbox, WitEffect};
use crate::text::sanitize_text;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// Longest tool description the host accepts from a plugin.
const MAX_DESCRIPTION_BYTES: usize = 8 * 1024;
/// Descriptions are cut to this many bytes for descriptors (and so for
/// models): a long description is a classic carrier of hidden instructions.
pub(crate) const DESCRIPTION_CAP: usize = 2 * 1024;
/// Titles are cut to this many bytes.
const TITLE_CAP: usize = 200;
/// Longest schema (JSON text) the host accepts from a plugin.
const MAX_SCHEMA_BYTES: usize = 64 * 1024;
/// Most tools one plugin may offer.
const MAX_TOOLS: usize = 128;

/// One tool as the plugin declared it, checked by the host.
#[derive(Debug, Clone)]
pub(crate) struct ToolDef {
    pub(crate) name: String,
    pub(crate) title: Option<String>,
    pub(crate) description: String,
    pub(crate) input_schema: serde_json::Value,
    pub(crate) output_schema: Option<serde_json::Value>,
    pub(crate) effect: Effect,
    pub(crate) validator: Arc<Schema>,
    /// Checks outputs when the tool declares an output schema.
    pub(crate) output_validator: Option<Arc<Schema>>,
}

/// A loaded, pinned, type-checked plugin, ready to instantiate per call.
pub(crate) struct LoadedPlugin {
    pub(crate) policy: PluginPolicy,
    /// The pre-instantiated component and the open grants.
    pub(crate) pre: Prepared,
    pub(crate) tools: Vec<ToolDef>,
    /// sha256 of the canonical JSON of the tool list exactly as the plugin
    /// declared it: changes whenever any name, text, schema or effect does.
    pub(crate) tool_list_sha256: String,
}

impl LoadedPlugin {
    /// Tool `t`'s declared effect, raised to the floor of the plugin's
    /// grants (see [`PluginPolicy::effect_floor`]).
    pub(crate) fn effect(&self, t: usize) -> Effect {
        self.tools[t].effect.max(self.policy.effect_floor())
    }

    /// When each tool needs approval: the configured setting, never below
    /// the floor of its effect. `origin` labels errors.
    pub(crate) fn approval_settings(
        &self,
        origin: &std::path::Path,
    ) -> Result<Vec<policy::ApprovalSetting>, Error> {
        let tools: Vec<(&str, Effect)> = (0..self.tools.len())
            .map(|t| (self.tools[t].name.as_str(), self.effect(t)))
            .collect();
        policy::approval_settings(&self.policy, &tools, origin)
    }

    /// Loads every plugin of `policies`, several at a time on this
    /// machine's cores (reading, hashing, authenticating a cached artifact,
    /// compiling and asking for the tools are most of a host's start).
    /// Results are in the order of `policies`, and end at the first that
    /// failed: a plugin after it is not loaded (threads stop taking plugins
    /// soon after one failed; one already started still finishes), so a broken
    /// manifest is reported without compiling, or opening the grants of,
    /// the rest.
    pub(crate) async fn load_all(
        sandbox: &Sandbox,
        cache: Option<&CompileCache>,
        policies: &[PluginPolicy],
    ) -> Vec<Result<LoadedPlugin, Error>> {
        if !policies.is_empty() {
            // Best effort: without the thread, the first schema builds it.
            let _ = std::thread::Builder::new()
                .name("portcullis-schema".into())
                .spawn(Schema::warm_up);
        }
        // Each `list-tools` takes one of the host's instance slots: never
        // more threads than slots, or one would wait for a slot (and could
        // give up, busy) where loading one by one never did.
        let workers = cores().min(policies.len()).min(sandbox.slots());
        // With one worker, the caller loads everything itself (below).
        let threads = if workers > 1 { workers } else { 0 };
        let next = AtomicUsize::new(0);
        let failed = AtomicBool::new(false);
        let results: Vec<Mutex<Option<Result<LoadedPlugin, Error>>>> =
            policies.iter().map(|_| Mutex::new(None)).collect();
        // Each thread asks its plugins for their tools on a runtime of its
        // own: a plugin's `list-tools` instance lives and ends there.
        std::thread::scope(|scope| {
            for _ in 0..threads {
                let worker = || {
                    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                        .enable_time()
                        .build()
                    else {
                        return;
                    };
                    // Indices are taken in order: one never taken lies
                    // after every one taken, a failed one among them.
                    while !failed.load(Ordering::Relaxed) {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(policy) = policies.get(i) else { break };
                        let loaded =
                            runtime.block_on(LoadedPlugin::load(sandbox, cache, policy.clone()));
                        if loaded.is_err() {
                            failed.store(true, Ordering::Relaxed);
                        }
                        *results[i].lock().unwrap_or_else(PoisonError::into_inner) = Some(loaded);
                    }
                };
                // A thread that cannot start leaves its plugins to the rest.
                let _ = std::thread::Builder::new()
                    .name("portcullis-load".into())
                    .spawn_scoped(scope, worker);
            }
        });
        // What no thread loaded (one worker, or none could start or make
        // a runtime) is loaded here, one after another, up to the first
        // failure: a plugin left after it stays unloaded.
        let mut loaded = Vec::with_capacity(policies.len());
        for (slot, policy) in results.into_iter().zip(policies) {
            let done = slot.into_inner().unwrap_or_else(PoisonError::into_inner);
            let done = match done {
                Some(done) => done,
                None => LoadedPlugin::load(sandbox, cache, policy.clone()).await,
            };
            let stop = done.is_err();
            loaded.push(done);
            if stop {
                break;
            }
        }
        loaded
    }

    /// Loads one plugin: [`LoadedPlugin::prepare`], then asks the
    /// instance for its tools and checks them against the pin.
    async fn load(
        sandbox: &Sandbox,
        cache: Option<&CompileCache>,
        policy: PluginPolicy,
    ) -> Result<LoadedPlugin, Error> {
        tracing::debug!(plugin = %policy.name, source = %policy.source.display(), "loading plugin");
        let pre = LoadedPlugin::prepare(sandbox, cache, &policy)?;
        LoadedPlugin::tools(sandbox, pre, policy).await
    }

    /// Reads `policy`'s plugin once, checks its pin, compiles exactly the
    /// pinned bytes (or loads them from the cache under their hash),
    /// refuses forbidden imports, opens the grants and pre-instantiates.
    fn prepare(
        sandbox: &Sandbox,
        cache: Option<&CompileCache>,
        policy: &PluginPolicy,
    ) -> Result<Prepared, Error> {
        let name = &policy.name;
        // Read once; everything below uses these bytes, never the path.
        let bytes = std::fs::read(&policy.source).map_err(|source| Error::PluginRead {
            plugin: name.clone(),
            path: policy.source.clone(),
            source,
        })?;
        // With a cache, the artifact compiled from the pinned bytes is
        // looked up (and authenticated) while another thread hashes the
        // bytes read: it is used only if they match the pin.
        // (The pin is 64 hex digits, checked with the policy: it names a
        // file in the cache folder and nothing else.)
        let (actual, cached) = match cache {
            Some(cache) => std::thread::scope(|scope| {
                let hashing = std::thread::Builder::new()
                    .name("portcullis-hash".into())
                    .spawn_scoped(scope, || sha256_hex(&bytes));
                let cached = cache.load(sandbox, &policy.sha256);
                let actual = match hashing {
                    Ok(hashing) => hashing.join().ok(),
                    Err(_) => Some(sha256_hex(&bytes)),
                };
                (actual, cached)
            }),
            None => (Some(sha256_hex(&bytes)), None),
        };
        let actual =
            actual.ok_or_else(|| Error::Internal(format!("hashing plugin `{name}` failed")))?;
        if actual != policy.sha256 {
            return Err(Error::PinMismatch {
                plugin: name.clone(),
                path: policy.source.clone(),
                expected: policy.sha256.clone(),
                actual,
            });
        }
        // Exactly the pinned bytes: found compiled in the cache under their
        // (verified) hash, or compiled now.
        let compiled = match (cached, cache) {
            (Some(component), _) => {
                tracing::debug!(plugin = %name, "plugin loaded from the compile cache");
                Ok(component)
            }
            (None, Some(cache)) => cache.compile_afresh(sandbox, &actual, &bytes),
            (None, None) => sandbox.compile(&bytes),
        };
        let component = compiled.map_err(|reason| Error::InvalidComponent {
            plugin: name.clone(),
            path: policy.source.clone(),
            reason,
        })?;
        // The memory image every instance maps, made now (on this thread)
        // rather than by the first call: an image failure is only a slower
        // first instantiation, never an error.
        if let Err(e) = component.initialize_copy_on_write_image() {
            tracing::debug!(plugin = %name, "no copy-on-write memory image: {e}");
        }
        let forbidden =
            sandbox.forbidden_imports(&component, !policy.http.is_empty(), &policy.deny_imports);
        if !forbidden.is_empty() {
            return Err(Error::ForbiddenImports {
                plugin: name.clone(),
                imports: forbidden,
            });
        }
        // Each grant opened once, here, without following symlinks; calls
        // get the same directories, whatever happens to the paths later.
        let dirs = OpenDirs::open(&policy.dirs, sandbox.file_io_in_place()).map_err(|message| {
            Error::Manifest {
                path: policy.source.clone(),
                message: format!("plugin `{name}`: {message}"),
                hint: Some(
                    "grant an existing directory by its real path, not through a symlink".into(),
                ),
            }
        })?;
        sandbox
            .prepare(&component, dirs)
            .map_err(|reason| Error::InvalidPlugin {
                plugin: name.clone(),
                reason,
            })
    }

    /// Makes a plugin of its prepared component: asks it for its tools
    /// and checks them against the pin.
    async fn tools(
        sandbox: &Sandbox,
        pre: Prepared,
        policy: PluginPolicy,
    ) -> Result<LoadedPlugin, Error> {
        let name = policy.name.clone();
        let specs =
            sandbox
                .list_tools(&pre, &policy)
                .await
                .map_err(|reason| Error::InvalidPlugin {
                    plugin: name.clone(),
                    reason,
                })?;
        let declared = tool_pin::tool_list(&specs);
        let tool_list_sha256 = tool_pin::tool_list_sha256(&declared);
        // Tool lists are pinned like bytes: a changed name, description,
        // schema or effect is refused until the operator re-pins it.
        if let Some(pinned) = &policy.tools_sha256
            && *pinned != tool_list_sha256
        {
            let before = policy
                .pinned_tools
                .as_ref()
                .filter(|list| tool_pin::tool_list_sha256(list) == *pinned);
            return Err(Error::ToolListChanged {
                plugin: name,
                expected: pinned.clone(),
                actual: tool_list_sha256,
                diff: tool_pin::tool_diff(before, &declared),
            });
        }
        let tools = check_tools(&name, specs)?;
        Ok(LoadedPlugin {
            policy,
            pre,
            tools,
            tool_list_sha256,
        })
    }
}

pub(super) fn check_tools(
    plugin: &str,
    specs: Vec<crate::sandbox::WitToolSpec>,
) -> Result<Vec<ToolDef>, Error> {
    let invalid = |reason: String| Error::InvalidPlugin {
        plugin: plugin.to_string(),
        reason,
    };
    if specs.len() > MAX_TOOLS {
        return Err(invalid(format!(
            "it declares {} tools; at most {MAX_TOOLS} are allowed",
            specs.len()
        )));
    }
    let mut tools: Vec<ToolDef> = Vec::with_capacity(specs.len());
    for spec in specs {
        if !policy::valid_name(&spec.name) {
            return Err(invalid(format!(
                "tool name `{}` is invalid: use 1-64 characters of `a-z`, `0-9`, `_` and `-`, starting with a letter",
                spec.name.escape_debug()
            )));
        }
        if tools.iter().any(|t| t.name == spec.name) {
            return Err(invalid(format!("tool `{}` is declared twice", spec.name)));
        }
        if spec.description.len() > MAX_DESCRIPTION_BYTES {
            return Err(invalid(format!(
                "tool `{}`: description is {} bytes; at most {MAX_DESCRIPTION_BYTES} are allowed",
                spec.name,
                spec.description.len()
            )));
        }
        let parse_schema = |text: &str, which: &str| -> Result<serde_json::Value, Error> {
            if text.len() > MAX_SCHEMA_BYTES {
                return Err(invalid(format!(
                    "tool `{}`: {which} is larger than {MAX_SCHEMA_BYTES} bytes",
                    spec.name
                )));
            }
            serde_json::from_str(text)
                .map_err(|e| invalid(format!("tool `{}`: {which} is not JSON: {e}", spec.name)))
        };
        let input_schema = parse_schema(&spec.input_schema, "input schema")?;
        let output_schema = spec
            .output_schema
            .as_deref()
            .map(|s| parse_schema(s, "output schema"))
            .transpose()?;
        let output_validator = output_schema
            .as_ref()
            .map(Schema::compile)
            .transpose()
            .map_err(|e| invalid(format!("tool `{}`: output schema: {e}", spec.name)))?
            .map(Arc::new);
        let validator = Schema::compile(&input_schema)
            .map_err(|e| invalid(format!("tool `{}`: input schema: {e}", spec.name)))?;
        tools.push(ToolDef {
            name: spec.name,
            title: spec.title.as_deref().map(|t| sanitize_text(t, TITLE_CAP)),
            description: sanitize_text(&spec.description, DESCRIPTION_CAP),
            input_schema,
            output_schema,
            effect: effect_of(&spec.effect),
            validator: Arc::new(validator),
            output_validator,
        });
    }
    Ok(tools)
}

pub(super) fn effect_of(effect: &WitEffect) -> Effect {
    match effect {
        WitEffect::Read => Effect::Read,
        WitEffect::Write => Effect::Write,
        WitEffect::Destructive => Effect::Destructive,
    }
}

/// The sha256 of the tool list as declared, in canonical JSON (see
/// `tool_pin`).
#[cfg(test)]
pub(super) fn tool_list_sha256(specs: &[crate::sandbox::WitToolSpec]) -> String {
    tool_pin::tool_list_sha256(&tool_pin::tool_list(specs))
}

/// The cores this process may use, asked once: the answer reads several
/// cgroup files, which costs more than loading a small plugin.
fn cores() -> usize {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CORES
        .get_or_init(|| std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get))
}

#[cfg(test)]
mod tests {
    use super::{DESCRIPTION_CAP, check_tools, tool_list_sha256};
    use crate::sandbox::{WitEffect, WitToolSpec};

    fn spec(description: &str) -> WitToolSpec {
        WitToolSpec {
            name: "t".into(),
            title: Some("T\u{1b}[2J".into()),
            description: description.into(),
            input_schema: r#"{"type": "object"}"#.into(),
            output_schema: None,
            effect: WitEffect::Read,
        }
    }

    #[test]
    fn poisoned_descriptions_are_sanitised_and_capped_at_load() {
        let poisoned = format!("Reads.\u{1b}[8m{}\u{202e}", "x".repeat(3 * DESCRIPTION_CAP));
        let tools = check_tools("p", vec![spec(&poisoned)]).expect("valid");
        let tool = &tools[0];
        assert!(
            tool.description.starts_with("Reads.xxx"),
            "{}",
            tool.description
        );
        assert!(tool.description.len() <= DESCRIPTION_CAP);
        assert!(tool.description.ends_with(" [truncated]"));
        assert!(!tool.description.contains('\u{1b}') && !tool.description.contains('\u{202e}'));
        assert_eq!(tool.title.as_deref(), Some("T"));
    }

    #[test]
    fn tool_list_hash_covers_the_raw_declaration() {
        let a = tool_list_sha256(&[spec("Reads.")]);
        assert_eq!(a, tool_list_sha256(&[spec("Reads.")]));
        // An invisible change (removed by sanitising) still changes the hash.
        assert_ne!(a, tool_list_sha256(&[spec("Reads.\u{200b}")]));
    }
}
