//! The SDK's copy of the WIT package (`sdk/wit/`, what the published crate
//! generates its bindings from) is byte-identical to the repository's
//! `wit/`: the same `.wit` files, the same bytes. When `wit/` changes, copy
//! it: `cp wit/*.wit sdk/wit/`.

use std::collections::BTreeMap;
use std::path::Path;

/// The `.wit` files of `dir`, by name.
fn wit_files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read `{}`: {e}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "wit"))
        .map(|path| {
            let name = path
                .file_name()
                .expect("a file name")
                .to_string_lossy()
                .into_owned();
            (name, std::fs::read(&path).expect("read a .wit file"))
        })
        .collect()
}

#[test]
fn the_sdk_wit_copy_is_byte_identical_to_the_repository_wit() {
    let sdk = Path::new(env!("CARGO_MANIFEST_DIR"));
    let repo = wit_files(&sdk.join("../wit"));
    let copy = wit_files(&sdk.join("wit"));
    assert!(!repo.is_empty(), "no .wit file in wit/");
    assert_eq!(
        repo.keys().collect::<Vec<_>>(),
        copy.keys().collect::<Vec<_>>(),
        "sdk/wit/ holds other .wit files than wit/: run `cp wit/*.wit sdk/wit/` (and remove stale ones)"
    );
    for (name, bytes) in &repo {
        assert!(
            copy[name] == *bytes,
            "sdk/wit/{name} differs from wit/{name}: run `cp wit/*.wit sdk/wit/`"
        );
    }
}
