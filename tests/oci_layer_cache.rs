//! A layer built twice from the same tar is compressed once: the second time
//! the store's blob is reused (what makes no-op rebuilds fast), and a missing
//! blob is simply rebuilt.

use bunny::layers::store::Store;
use bunny::oci::layer::{
    write_layer, Compression, CompressionChoice, LayerContent, LayerEntry, LayerOptions,
};

fn entries(dir: &std::path::Path) -> Vec<LayerEntry> {
    let text: String = (0..20_000).map(|i| format!("line {i}\n")).collect();
    std::fs::write(dir.join("text"), text).unwrap();
    vec![LayerEntry {
        path: "/etc/text".into(),
        content: LayerContent::File(dir.join("text")),
        mode: 0o644,
    }]
}

#[test]
fn the_second_build_reuses_the_compressed_blob() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(&tmp.path().join("store")).unwrap();
    let opts = LayerOptions {
        mtime: 0,
        compression: CompressionChoice::Fixed(Compression::Gzip),
    };
    let e = entries(tmp.path());
    let first = write_layer(&e, &opts, &store).unwrap();
    let blob = store.blob_path(first.descriptor.digest().as_ref()).unwrap();

    // The store never rewrites a blob it has, so the blob's mtime proves
    // nothing; instead take away the scratch space every compression
    // writes into: only a cache hit can still answer.
    let tmp_dir = store.tmp_dir();
    std::fs::rename(&tmp_dir, tmp.path().join("tmp-away")).unwrap();
    std::fs::write(&tmp_dir, b"not a directory").unwrap();
    let second = write_layer(&e, &opts, &store).expect("the second build compressed again");
    assert_eq!(first.descriptor, second.descriptor);
    assert_eq!(first.diff_id, second.diff_id);
    std::fs::remove_file(&tmp_dir).unwrap();
    std::fs::rename(tmp.path().join("tmp-away"), &tmp_dir).unwrap();

    // Lose the blob: the cache entry must not be trusted, the layer is rebuilt.
    std::fs::remove_file(&blob).unwrap();
    let third = write_layer(&e, &opts, &store).unwrap();
    assert_eq!(first.descriptor, third.descriptor);
    assert!(blob.exists());
    assert!(store.verify().unwrap().is_empty());

    // Another compression of the same tar is its own blob.
    let plain = LayerOptions {
        mtime: 0,
        compression: CompressionChoice::Fixed(Compression::None),
    };
    let none = write_layer(&e, &plain, &store).unwrap();
    assert_eq!(none.diff_id, first.diff_id);
    assert_eq!(none.descriptor.digest().to_string(), first.diff_id);
}
