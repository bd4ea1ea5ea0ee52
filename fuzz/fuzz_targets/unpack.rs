#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

/// One base directory per fuzzing process, holding only the current
/// input's scratch directory (the harness checks that).
fn base() -> &'static PathBuf {
    static BASE: OnceLock<PathBuf> = OnceLock::new();
    BASE.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("bunny-fuzz-unpack-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("creating the fuzz base directory");
        dir
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| bunny_fuzz::unpack(data, base()));
