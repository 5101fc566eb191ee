//! `portcullis new`: a plugin folder that builds, pins, tests and runs on
//! its own, outside this repository, in Rust, Python or JavaScript.
//!
//! The folder holds one example tool (`greet`), a `build.sh` that produces
//! `NAME.wasm`, a manifest (`portcullis.toml`, pinned by `portcullis pin`
//! after the first build), a tests file (`tests/NAME.toml`) and a README
//! with the commands. Python and JavaScript folders carry a copy of the WIT
//! (`wit/tool.wit`); Rust ones get it through `portcullis-sdk`.

use super::Failure;
use portcullis::sha256_hex;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
#[command(after_long_help = "\
Then, for a plugin made with `--dir DIR`:
  DIR/NAME/build.sh
  portcullis pin DIR/NAME/portcullis.toml
  portcullis test DIR/NAME/portcullis.toml
  portcullis call DIR/NAME/portcullis.toml NAME.greet '{\"name\": \"Ada\"}'")]
pub(crate) struct Args {
    /// The plugin's name: 1-64 of `a-z`, `0-9`, `_` and `-`, starting with
    /// a letter.
    name: String,
    /// The language of the plugin.
    #[arg(long, value_enum, default_value_t = Lang::Rust)]
    lang: Lang,
    /// The folder to create the plugin folder `NAME` in (default: the
    /// current one).
    #[arg(long, default_value = ".")]
    dir: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Lang {
    /// `portcullis-sdk`, cargo, wasm32-wasip2.
    Rust,
    /// componentize-py 0.25.1 (from PyPI).
    Python,
    /// componentize-js 0.23 (from npm).
    Js,
}

const WIT: &str = include_str!("../../../wit/tool.wit");
/// The SDK of the checkout this binary was built from, if it is still
/// there; otherwise the scaffold names the repository.
const SDK_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../sdk");
const SDK_GIT: &str = "https://github.com/portcullis-dev/portcullis";

pub(crate) fn run(args: &Args) -> Result<ExitCode, Failure> {
    let name = &args.name;
    let valid = (1..=64).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if !valid {
        return Err(Failure::Config {
            message: format!("plugin name `{name}` is invalid"),
            hint: Some(
                "use 1-64 characters of `a-z`, `0-9`, `_` and `-`, starting with a letter".into(),
            ),
        });
    }
    let root = args.dir.join(name);
    if root.exists() {
        return Err(Failure::Config {
            message: format!("`{}` already exists", root.display()),
            hint: Some("choose another name or --dir; nothing was written".into()),
        });
    }
    let files = files(name, args.lang);
    for (path, text, executable) in &files {
        write(&root.join(path), text, *executable)?;
    }
    let shown = root.display();
    outln!("created {shown} ({} files)", files.len());
    outln!("next:");
    outln!("  {shown}/build.sh");
    outln!("  portcullis pin {shown}/portcullis.toml");
    outln!("  portcullis test {shown}/portcullis.toml");
    outln!("  portcullis call {shown}/portcullis.toml {name}.greet '{{\"name\": \"Ada\"}}'");
    Ok(ExitCode::SUCCESS)
}

fn write(path: &Path, text: &str, executable: bool) -> Result<(), Failure> {
    let fail = |e: std::io::Error| Failure::Config {
        message: format!("cannot write `{}`: {e}", path.display()),
        hint: None,
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(fail)?;
    }
    std::fs::write(path, text).map_err(fail)?;
    if executable {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).map_err(fail)?;
    }
    Ok(())
}

/// Every file of the scaffold: (path in the folder, text, executable).
fn files(name: &str, lang: Lang) -> Vec<(String, String, bool)> {
    let fill = |template: &str| {
        template
            .replace("{{name}}", name)
            .replace("{{crate}}", &name.replace('-', "_"))
            .replace("{{sdk}}", &sdk_dependency())
    };
    let mut files = vec![
        ("portcullis.toml".to_string(), manifest(name, lang), false),
        (
            format!("tests/{name}.toml"),
            fill(include_str!("templates/tests.toml")),
            false,
        ),
        (
            "README.md".into(),
            fill(include_str!("templates/README.md")),
            false,
        ),
    ];
    let mut add = |path: &str, text: String, executable: bool| {
        files.push((path.to_string(), text, executable));
    };
    match lang {
        Lang::Rust => {
            add(
                "Cargo.toml",
                fill(include_str!("templates/rust/Cargo.toml")),
                false,
            );
            add(
                "src/lib.rs",
                fill(include_str!("templates/rust/lib.rs")),
                false,
            );
            add(
                "build.sh",
                fill(include_str!("templates/rust/build.sh")),
                true,
            );
            add(".gitignore", "/target\n".into(), false);
        }
        Lang::Python => {
            add(
                "app.py",
                fill(include_str!("templates/python/app.py")),
                false,
            );
            add(
                "build.sh",
                fill(include_str!("templates/python/build.sh")),
                true,
            );
            add("wit/tool.wit", WIT.into(), false);
            add(".gitignore", "/.venv\n__pycache__/\n".into(), false);
        }
        Lang::Js => {
            add("app.js", fill(include_str!("templates/js/app.js")), false);
            add(
                "package.json",
                fill(include_str!("templates/js/package.json")),
                false,
            );
            add(
                "build.sh",
                fill(include_str!("templates/js/build.sh")),
                true,
            );
            add("wit/tool.wit", WIT.into(), false);
            add(".gitignore", "/node_modules\n".into(), false);
        }
    }
    files
}

fn manifest(name: &str, lang: Lang) -> String {
    let deny = if lang == Lang::Python {
        "# CPython imports wasi:sockets though the tool never uses it: link\n\
         # implementations that refuse every operation (access-denied).\n\
         deny_imports = [\"wasi:sockets/*\"]\n"
    } else {
        ""
    };
    // A placeholder pin that matches no component: `portcullis pin`
    // replaces it after the first build you trust.
    let placeholder = sha256_hex(b"");
    format!(
        "# Paste the [plugins.{name}] table into an agent's manifest to use the\n\
         # plugin there (with `source` relative to that manifest's folder).\n\
         [plugins.{name}]\n\
         source = \"{name}.wasm\"\n\
         sha256 = \"{placeholder}\"   # `portcullis pin portcullis.toml` after each build\n\
         {deny}"
    )
}

fn sdk_dependency() -> String {
    let dir = Path::new(SDK_DIR);
    match dir.join("Cargo.toml").is_file().then(|| dir.canonicalize()) {
        Some(Ok(path)) => format!(
            "portcullis-sdk = {{ version = \"0.1\", path = {:?} }}",
            path.display().to_string()
        ),
        _ => format!("portcullis-sdk = {{ version = \"0.1\", git = \"{SDK_GIT}\" }}"),
    }
}
