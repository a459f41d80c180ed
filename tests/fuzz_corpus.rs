//! Replays every entry of `fuzz/corpus/<target>/` through the check its
//! fuzz target runs ([`moms::fuzzing`]), on the stable toolchain: what a
//! fuzzer once found stays fixed, and the seeds stay valid inputs.

use std::path::Path;

#[test]
fn every_corpus_entry_passes_its_target_check() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    let mut replayed = 0;
    for (target, check) in moms::fuzzing::TARGETS {
        let folder = root.join(target);
        let entries =
            std::fs::read_dir(&folder).unwrap_or_else(|e| panic!("{}: {e}", folder.display()));
        let mut count = 0;
        for entry in entries {
            let path = entry.unwrap().path();
            let data = std::fs::read(&path).unwrap();
            let outcome = std::panic::catch_unwind(|| check(&data));
            assert!(outcome.is_ok(), "{target}: {} fails", path.display());
            count += 1;
        }
        assert!(count > 0, "{target} has a corpus");
        replayed += count;
    }
    println!("replayed {replayed} corpus entries");
}

/// Found by the `smpp_receipt` target (corpus entry `spaces`): `id:`
/// followed by a space gave a receipt for the empty id, which would match
/// any message an SMSC had accepted with an empty message_id.
#[test]
fn a_receipt_whose_id_field_is_empty_names_no_message() {
    let text = b"id: sub:001 dlvrd:001 stat:DELIVRD err:000 text:";
    assert_eq!(moms::smpp::receipt::parse(None, None, text), None);
    let tlv = moms::smpp::receipt::parse(Some("A1B2"), Some(2), text).unwrap();
    assert_eq!(tlv.message_id, "A1B2");
}
