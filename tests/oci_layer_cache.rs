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
    let written = std::fs::metadata(&blob).unwrap().modified().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));

    let second = write_layer(&e, &opts, &store).unwrap();
    assert_eq!(first.descriptor, second.descriptor);
    assert_eq!(first.diff_id, second.diff_id);
    assert_eq!(
        std::fs::metadata(&blob).unwrap().modified().unwrap(),
        written,
        "the blob was written again"
    );

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
