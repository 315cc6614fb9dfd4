use super::*;
use std::io::Read;

/// Persists `bytes` (stand-in ciphertext: the store never looks inside) as one object
/// of the request `pending`.
fn put(store: &Store, pending: &PendingObjects, bytes: &[u8]) -> ObjectId {
    let mut object = store.create_object(pending);
    object.write_all(bytes).unwrap();
    let id = ObjectId::of(bytes);
    object.persist(&id, pending).unwrap();
    id
}

/// Commits submission `name` of these objects (the last is its manifest).
fn commit_objects(store: &Store, name: &str, objects: &[&[u8]]) -> Vec<ObjectId> {
    let pending = PendingObjects::default();
    let ids: Vec<ObjectId> = objects.iter().map(|b| put(store, &pending, b)).collect();
    store.commit(&pending, &record(name, &ids, 0), CaseChoice::WithoutCodename).unwrap();
    ids
}

/// A submission id (32 hex digits) named after `name`.
fn sid(name: &str) -> String {
    ObjectId::of(name.as_bytes()).as_str()[..32].to_string()
}

fn record(name: &str, objects: &[ObjectId], total_bytes: u64) -> SubmissionRecord {
    let (manifest, attachments) = objects.split_last().unwrap();
    SubmissionRecord {
        id: sid(name).into(),
        received_at: "2026-11-29T10:00:00Z".into(),
        manifest: manifest.clone(),
        attachments: attachments.to_vec(),
        total_bytes,
        recipients: "0".repeat(64),
        case: sid(name).into(),
        log_index: None,
    }
}

/// A new, swept store in a temporary directory (kept alive by the first value).
fn new_store() -> (tempfile::TempDir, PathBuf, Store) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let store = Store::open(&data).unwrap();
    store.sweep().unwrap();
    (dir, data, store)
}

fn object_files(dir: &Path) -> usize {
    fs::read_dir(dir.join("objects"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_type().unwrap().is_file())
        .count()
}

#[test]
fn small_objects_live_in_the_index_large_ones_in_files_and_both_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let small = vec![7u8; 3000];
    let large = vec![9u8; INLINE_MAX + 1];
    let ids = {
        let store = Store::open(&data).unwrap();
        store.sweep().unwrap();
        let pending = PendingObjects::default();
        let ids = vec![put(&store, &pending, &large), put(&store, &pending, &small)];
        let total = (small.len() + large.len()) as u64;
        store.commit(&pending, &record("s1", &ids, total), CaseChoice::WithoutCodename).unwrap();
        assert_eq!(object_files(&data), 1, "only the large object is a file");
        ids
    };
    let store = Store::open(&data).unwrap();
    store.usage().set_quota(1 << 30);
    store.sweep().unwrap();
    for (id, bytes) in ids.iter().zip([&large, &small]) {
        let (mut object, len) = store.open_object(id).unwrap();
        let mut read = Vec::new();
        object.read_to_end(&mut read).unwrap();
        assert_eq!((&read, len), (bytes, bytes.len() as u64));
        assert_eq!(store.object_len(id).unwrap(), len);
    }
    let listed: Vec<ObjectId> = store.list_objects().unwrap().into_iter().map(|o| o.0).collect();
    let mut expected = ids.clone();
    expected.sort();
    assert_eq!(listed, expected);
    let status = store.status().unwrap();
    assert_eq!((status.objects, status.store_bytes), (2, (small.len() + large.len()) as u64));
    assert_eq!(store.usage().stored(), large.len() as u64, "object files");
    assert!(store.usage().index_bytes() > small.len() as u64, "and the index holds the rest");
}

/// sled writes any page over 128 KiB to a blob file it never fsyncs (sled #1077): the
/// chunking must keep every page of small objects under that, however they arrive.
#[test]
fn small_objects_never_reach_an_unsynced_sled_blob() {
    let (_dir, data, store) = new_store();
    let ids: Vec<ObjectId> = (0..300u32)
        .map(|n| {
            let pending = PendingObjects::default();
            let size = INLINE_MAX - (n as usize * 97) % 4096;
            let bytes: Vec<u8> = (0..size).map(|i| (i as u32 ^ n) as u8).collect();
            let id = put(&store, &pending, &bytes);
            let record = record(&format!("s{n}"), std::slice::from_ref(&id), 0);
            store.commit(&pending, &record, CaseChoice::WithoutCodename).unwrap();
            id
        })
        .collect();
    assert_eq!(object_files(&data), 0, "all of them small");
    let blobs = fs::read_dir(data.join("index/blobs")).map_or(0, std::iter::Iterator::count);
    assert_eq!(blobs, 0, "no page of the index went to an unsynced blob");
    assert_eq!(store.list_objects().unwrap().len(), ids.len());
}

#[test]
fn an_abandoned_request_leaves_no_small_object_and_no_usage() {
    let (_dir, _, store) = new_store();
    let pending = PendingObjects::default();
    let id = put(&store, &pending, b"a short testimony, sealed");
    pending.abandon();
    assert_eq!(store.usage().stored(), 0);
    assert!(store.open_object(&id).is_err());
    assert!(store.list_objects().unwrap().is_empty());
}

#[test]
fn one_request_keeps_a_bounded_amount_in_memory_and_files_the_rest() {
    let (_dir, data, store) = new_store();
    let pending = PendingObjects::default();
    let each = 60 * 1024;
    let count = objects::REQUEST_INLINE_MAX / each + 2;
    let ids: Vec<ObjectId> =
        (0..count).map(|i| put(&store, &pending, &vec![i as u8; each])).collect();
    assert_eq!(object_files(&data), 2, "past the request's allowance, objects are files");
    let total = (count * each) as u64;
    store.commit(&pending, &record("s1", &ids, total), CaseChoice::WithoutCodename).unwrap();
    assert_eq!(store.list_objects().unwrap().len(), count);
}

#[test]
fn purging_removes_small_objects_and_files_but_not_what_another_record_names() {
    let (_dir, data, store) = new_store();
    let commit = |id: &str, objects: &[&[u8]]| commit_objects(&store, id, objects);
    let shared = vec![1u8; 100];
    let large = vec![2u8; INLINE_MAX * 2];
    let old = commit("old", &[&large, &shared, b"old manifest"]);
    let kept = commit("kept", &[&shared, b"kept manifest"]);
    let last =
        LastExport { bundle: sid("b"), exported_at: "2026-01-01T00:00:00Z".into(), submissions: 1 };
    store.mark_exported(&last, &[sid("old")], 2).unwrap();
    let (purged, freed) = store.purge_exported_before("2026-12-01T00:00:00Z").unwrap();
    assert_eq!((purged, freed), (1, (large.len() + b"old manifest".len()) as u64));
    assert!(store.open_object(&old[0]).is_err() && store.open_object(&old[2]).is_err());
    for id in &kept {
        assert!(store.open_object(id).is_ok(), "the other record's objects stay");
    }
    assert_eq!(object_files(&data), 0);
    assert_eq!(store.usage().stored(), 0, "no object file left");
}

#[test]
fn a_replica_deletes_only_what_its_settings_ask_it_holds_and_no_kept_submission_needs() {
    use crate::log::journal::PurgeReason;
    let (_dir, _data, store) = new_store();
    let commit = |id: &str, objects: &[&[u8]]| commit_objects(&store, id, objects);
    let shared = vec![1u8; 100];
    let old = commit("old", &[&shared, b"old manifest"]);
    let recent = commit("recent", &[b"recent manifest"]);
    commit("kept", &[&shared, b"kept manifest"]);
    commit("late", &[b"late manifest"]);
    let export = |at: &str, ids: &[String]| {
        let last = LastExport { bundle: sid(at), exported_at: at.into(), submissions: ids.len() };
        store.mark_exported(&last, ids, 4).unwrap();
    };
    export("2026-01-01T00:00:00Z", &[sid("old")]);
    export("2026-11-30T00:00:00Z", &[sid("recent"), sid("late")]);
    let due = |purge: bool, cutoff: Option<&str>| {
        let due = store.due_deletions_before("p", purge, cutoff).unwrap();
        let reasons: Vec<(PurgeReason, Vec<ObjectId>)> = due
            .objects
            .into_iter()
            .map(|(r, objects)| (r, objects.into_iter().map(|(id, _)| id).collect()))
            .collect();
        (due.submissions, reasons)
    };
    let retention = Some("2026-06-01T00:00:00Z");
    // Nothing the replica does not hold yet is ever due there.
    assert_eq!(due(true, retention), (vec![], vec![]));
    store.record_replica_progress("p", ReplicaProgress { segment_from: 0, through: 3 }).unwrap();
    // Retention: only what was exported before the cutoff; the object "kept" still
    // needs stays.
    assert_eq!(
        due(false, retention),
        (vec![sid("old")], vec![(PurgeReason::Retention, vec![old[1].clone()])])
    );
    // Nothing to do under a rule that deletes nothing, whatever the server purged.
    let (purged, _) = store.purge_exported_before("2026-12-01T00:00:00Z").unwrap();
    assert_eq!(purged, 3);
    assert_eq!(due(false, None), (vec![], vec![]));
    // Following purges: what the server purged and the replica holds ("late" it does
    // not hold yet).
    let (submissions, reasons) = due(true, None);
    assert_eq!(submissions.len(), 2);
    assert!(submissions.contains(&sid("old")) && submissions.contains(&sid("recent")));
    let mut expected = vec![old[1].clone(), recent[0].clone()];
    expected.sort();
    assert_eq!(reasons, vec![(PurgeReason::Purged, expected)]);
    // Once recorded, a deletion is not due again, and another replica's are its own.
    store.record_deletions("p", &[sid("old")]).unwrap();
    assert_eq!(due(true, None).0, vec![sid("recent")]);
    assert!(store.due_deletions_before("q", true, None).unwrap().submissions.is_empty());
}

#[test]
fn an_export_finds_what_is_new_in_stores_from_before_its_list_and_after_an_older_writer() {
    let (_dir, data, store) = new_store();
    for name in ["a", "b", "c"] {
        commit_objects(&store, name, &[name.as_bytes()]);
    }
    let last =
        LastExport { bundle: sid("x"), exported_at: "2026-01-01T00:00:00Z".into(), submissions: 1 };
    store.mark_exported(&last, &[sid("a")], 3).unwrap();
    let new_ones = |store: &Store| {
        let mut ids: Vec<String> =
            store.submissions_to_export(false).unwrap().into_iter().map(|r| r.id.into()).collect();
        ids.sort();
        ids
    };
    let sorted = |names: &[&str]| {
        let mut ids: Vec<String> = names.iter().map(|n| sid(n)).collect();
        ids.sort();
        ids
    };
    assert_eq!(new_ones(&store), sorted(&["b", "c"]));
    drop(store);
    // A store from before the list: neither the list nor its log position.
    let with_sled = |change: &dyn Fn(&sled::Db)| {
        let db = sled::open(data.join("index")).unwrap();
        change(&db);
        db.flush().unwrap();
    };
    with_sled(&|db| {
        db.drop_tree("unexported").unwrap();
        db.open_tree("meta").unwrap().remove(index::UNEXPORTED_THROUGH).unwrap();
    });
    let store = Store::open(&data).unwrap();
    assert_eq!(new_ones(&store), sorted(&["b", "c"]));
    // An older amanat, started on this store, recorded "d" without the list or its
    // position: the next start finds it in the log.
    let before = store.log_size().unwrap();
    commit_objects(&store, "d", &[b"d"]);
    drop(store);
    with_sled(&|db| {
        db.open_tree("unexported").unwrap().remove(sid("d").as_bytes()).unwrap();
        let meta = db.open_tree("meta").unwrap();
        meta.insert(index::UNEXPORTED_THROUGH, &before.to_be_bytes()[..]).unwrap();
    });
    let store = Store::open(&data).unwrap();
    assert_eq!(new_ones(&store), sorted(&["b", "c", "d"]));
    store.mark_exported(&last, &[sid("b"), sid("d")], store.log_size().unwrap()).unwrap();
    assert_eq!(new_ones(&store), sorted(&["c"]));
}
