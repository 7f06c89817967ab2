//! Embeds the built dashboard (`web-ui/dist`, made by `make ui`) into the binary, so that the
//! sidecar is one file. Without a build, the binary serves a page that says how to make one.

use std::path::Path;

fn main() {
    let dist = Path::new(env!("CARGO_MANIFEST_DIR")).join("../web-ui/dist");
    let mut files = Vec::new();
    if dist.is_dir() {
        collect(&dist, &dist, &mut files);
        println!("cargo:rerun-if-changed={}", dist.display());
    } else {
        // Rerun once the folder appears (creating it changes its parent).
        println!(
            "cargo:rerun-if-changed={}",
            dist.parent().unwrap().display()
        );
    }
    files.sort();
    let entries: String = files
        .iter()
        .map(|(name, path)| format!("    ({name:?}, include_bytes!({path:?})),\n"))
        .collect();
    let out = Path::new(&std::env::var("OUT_DIR").unwrap()).join("ui_assets.rs");
    std::fs::write(out, format!("/// The dashboard's files: path below `/`, contents.\npub static ASSETS: &[(&str, &[u8])] = &[\n{entries}];\n")).unwrap();
}

fn collect(root: &Path, dir: &Path, files: &mut Vec<(String, String)>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect(root, &path, files);
        } else {
            let name = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            files.push((
                name,
                path.canonicalize().unwrap().to_string_lossy().into_owned(),
            ));
        }
    }
}
