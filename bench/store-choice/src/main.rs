//! Store-choice benchmark: compares embedded key-value stores on Sluice's keyed-state
//! access pattern (batched read-modify-write, prefix scans, bulk restore) and reports
//! throughput, peak RSS and on-disk size.
//!
//! Usage: store-choice <redb|fjall|heed> <N keys> [--rmw-ops N] [--scans N]
//!        [--cache-mb MB] [--memtable-mb MB (fjall only)] [--dir PATH] [--keep]

use std::path::{Path, PathBuf};
use std::time::Instant;

const BATCH: usize = 1000;
const VALUE_LEN: usize = 100;
/// Every key starts with this small prefix (a state-store "namespace").
const KEY_PREFIX: &[u8; 2] = b"s1";
/// Each entity has this many keys (think: windows of one key).
const WINDOWS: u64 = 10;

// ---------------------------------------------------------------------------------------
// Key/value generation

/// splitmix64 finaliser: a bijection on u64, so distinct inputs give distinct keys.
fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

struct Keys {
    entities: u64,
}

impl Keys {
    fn new(n: u64) -> Self {
        Keys { entities: n.div_ceil(WINDOWS) }
    }
    /// Key number i: entity = i % entities, window = i / entities. Loading i = 0..N thus
    /// writes entities in random order (scrambled by mix64), one window at a time.
    fn key(&self, i: u64) -> [u8; 18] {
        let entity = i % self.entities;
        let window = i / self.entities;
        let mut k = [0u8; 18];
        k[..2].copy_from_slice(KEY_PREFIX);
        k[2..10].copy_from_slice(&mix64(entity).to_be_bytes());
        k[10..18].copy_from_slice(&window.to_be_bytes());
        k
    }
    fn prefix(&self, entity: u64) -> [u8; 10] {
        let mut k = [0u8; 10];
        k[..2].copy_from_slice(KEY_PREFIX);
        k[2..10].copy_from_slice(&mix64(entity).to_be_bytes());
        k
    }
}

fn initial_value(i: u64) -> [u8; VALUE_LEN] {
    let mut v = [0u8; VALUE_LEN];
    // 8-byte counter, then filler that does not compress to nothing.
    let mut x = mix64(i ^ 0xABCD);
    for chunk in v[8..].chunks_mut(8) {
        let b = x.to_le_bytes();
        chunk.copy_from_slice(&b[..chunk.len()]);
        x = mix64(x);
    }
    v
}

/// The "aggregate update": bump the counter in the first 8 bytes.
fn update(old: Option<&[u8]>, i: u64, out: &mut Vec<u8>) {
    out.clear();
    match old {
        Some(o) if o.len() >= 8 => {
            out.extend_from_slice(o);
            let c = u64::from_le_bytes(o[..8].try_into().unwrap()) + 1;
            out[..8].copy_from_slice(&c.to_le_bytes());
        }
        _ => out.extend_from_slice(&initial_value(i)),
    }
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

enum Op {
    Rmw([u8; 18], u64),
    Delete([u8; 18]),
}

// ---------------------------------------------------------------------------------------
// The store abstraction: exactly what a keyed-state backend needs.

trait Store {
    /// One write batch of puts, committed atomically (restore / bulk load).
    fn load_batch(&mut self, kvs: &[([u8; 18], [u8; VALUE_LEN])]);
    /// One record batch: per op a get + put (or a delete), then one commit.
    fn rmw_batch(&mut self, ops: &[Op]) -> u64;
    /// A group of prefix scans under one read view; returns (entries, value bytes).
    fn scan_prefixes(&mut self, prefixes: &[[u8; 10]]) -> (u64, u64);
    /// Flush whatever is buffered (no fsync needed) and close.
    fn close(self: Box<Self>);
}

// ---------------------------------------------------------------------------------------
// redb

const REDB_TABLE: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new("state");

struct RedbStore {
    db: redb::Database,
}

impl RedbStore {
    fn open(dir: &Path, cache_bytes: usize) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let db = redb::Database::builder()
            .set_cache_size(cache_bytes)
            .create(dir.join("state.redb"))
            .unwrap();
        let w = db.begin_write().unwrap();
        w.open_table(REDB_TABLE).unwrap();
        w.commit().unwrap();
        RedbStore { db }
    }
    fn begin(&self) -> redb::WriteTransaction {
        let mut w = self.db.begin_write().unwrap();
        w.set_durability(redb::Durability::None).unwrap();
        w
    }
}

impl Store for RedbStore {
    fn load_batch(&mut self, kvs: &[([u8; 18], [u8; VALUE_LEN])]) {
        let w = self.begin();
        {
            let mut t = w.open_table(REDB_TABLE).unwrap();
            for (k, v) in kvs {
                t.insert(k.as_slice(), v.as_slice()).unwrap();
            }
        }
        w.commit().unwrap();
    }
    fn rmw_batch(&mut self, ops: &[Op]) -> u64 {
        use redb::ReadableTable;
        let w = self.begin();
        let mut found = 0;
        let mut buf = Vec::with_capacity(VALUE_LEN);
        {
            let mut t = w.open_table(REDB_TABLE).unwrap();
            for op in ops {
                match op {
                    Op::Rmw(k, i) => {
                        {
                            let old = t.get(k.as_slice()).unwrap();
                            found += old.is_some() as u64;
                            update(old.as_ref().map(|g| g.value()), *i, &mut buf);
                        }
                        t.insert(k.as_slice(), buf.as_slice()).unwrap();
                    }
                    Op::Delete(k) => {
                        t.remove(k.as_slice()).unwrap();
                    }
                }
            }
        }
        w.commit().unwrap();
        found
    }
    fn scan_prefixes(&mut self, prefixes: &[[u8; 10]]) -> (u64, u64) {
        use redb::ReadableDatabase;
        let r = self.db.begin_read().unwrap();
        let t = r.open_table(REDB_TABLE).unwrap();
        let (mut n, mut bytes) = (0, 0);
        for p in prefixes {
            for item in t.range::<&[u8]>(p.as_slice()..).unwrap() {
                let (k, v) = item.unwrap();
                if !k.value().starts_with(p) {
                    break;
                }
                n += 1;
                bytes += v.value().len() as u64;
            }
        }
        (n, bytes)
    }
    fn close(self: Box<Self>) {
        // Durability::None commits are only in memory/OS buffers until a durable commit;
        // do one at close so the on-disk size is the real one.
        let w = self.db.begin_write().unwrap();
        w.commit().unwrap();
        drop(self.db);
    }
}

// ---------------------------------------------------------------------------------------
// fjall

struct FjallStore {
    db: fjall::Database,
    ks: fjall::Keyspace,
}

impl FjallStore {
    fn open(dir: &Path, cache_bytes: usize, memtable_mb: Option<u64>) -> Self {
        let db = fjall::Database::builder(dir)
            .cache_size(cache_bytes as u64)
            .open()
            .unwrap();
        let ks = db
            .keyspace("state", || {
                let o = fjall::KeyspaceCreateOptions::default();
                match memtable_mb {
                    Some(mb) => o.max_memtable_size(mb << 20),
                    None => o,
                }
            })
            .unwrap();
        FjallStore { db, ks }
    }
}

impl Store for FjallStore {
    fn load_batch(&mut self, kvs: &[([u8; 18], [u8; VALUE_LEN])]) {
        // db.batch() writes the journal to OS buffers (PersistMode::Buffer): no fsync.
        let mut b = self.db.batch();
        for (k, v) in kvs {
            b.insert(&self.ks, k.as_slice(), v.as_slice());
        }
        b.commit().unwrap();
    }
    fn rmw_batch(&mut self, ops: &[Op]) -> u64 {
        // Reads go to the committed state; a real backend would overlay the pending batch
        // (a small HashMap) to read its own writes within one record batch.
        let mut b = self.db.batch();
        let mut found = 0;
        let mut buf = Vec::with_capacity(VALUE_LEN);
        for op in ops {
            match op {
                Op::Rmw(k, i) => {
                    let old = self.ks.get(k).unwrap();
                    found += old.is_some() as u64;
                    update(old.as_deref(), *i, &mut buf);
                    b.insert(&self.ks, k.as_slice(), buf.as_slice());
                }
                Op::Delete(k) => b.remove(&self.ks, k.as_slice()),
            }
        }
        b.commit().unwrap();
        found
    }
    fn scan_prefixes(&mut self, prefixes: &[[u8; 10]]) -> (u64, u64) {
        let (mut n, mut bytes) = (0, 0);
        for p in prefixes {
            for g in self.ks.prefix(p) {
                let (_k, v) = g.into_inner().unwrap();
                n += 1;
                bytes += v.len() as u64;
            }
        }
        (n, bytes)
    }
    fn close(self: Box<Self>) {
        self.db.persist(fjall::PersistMode::Buffer).unwrap();
        drop(self.ks);
        drop(self.db);
    }
}

// ---------------------------------------------------------------------------------------
// heed (LMDB)

struct HeedStore<'e> {
    env: &'e heed::Env,
    db: heed::Database<'e, heed::types::Bytes, heed::types::Bytes>,
}

impl<'e> HeedStore<'e> {
    fn env(dir: &Path) -> heed::Env {
        std::fs::create_dir_all(dir).unwrap();
        unsafe {
            heed::EnvOpenOptions::new()
                .map_size(64 << 30)
                .max_dbs(4)
                .flags(heed::EnvFlags::NO_SYNC | heed::EnvFlags::NO_META_SYNC | heed::EnvFlags::NO_READ_AHEAD)
                .open(dir)
                .unwrap()
        }
    }
    fn open(env: &'e heed::Env) -> Self {
        let wtxn = env.write_txn().unwrap();
        let db = env
            .create_databases_and_commit(wtxn, |o, wtxn| -> heed::Result<_> {
                let db = o.create_database::<heed::types::Bytes, heed::types::Bytes>(wtxn, Some("state"))?;
                Ok(heed::CommitOrAbort::<_, ()>::Commit(db))
            })
            .unwrap()
            .unwrap_commit();
        HeedStore { env, db }
    }
}

impl Store for HeedStore<'_> {
    fn load_batch(&mut self, kvs: &[([u8; 18], [u8; VALUE_LEN])]) {
        let mut w = self.env.write_txn().unwrap();
        for (k, v) in kvs {
            self.db.put(&mut w, k.as_slice(), v.as_slice()).unwrap();
        }
        w.commit().unwrap();
    }
    fn rmw_batch(&mut self, ops: &[Op]) -> u64 {
        let mut w = self.env.write_txn().unwrap();
        let mut found = 0;
        let mut buf = Vec::with_capacity(VALUE_LEN);
        for op in ops {
            match op {
                Op::Rmw(k, i) => {
                    let old = self.db.get(&w, k.as_slice()).unwrap();
                    found += old.is_some() as u64;
                    update(old, *i, &mut buf);
                    self.db.put(&mut w, k.as_slice(), buf.as_slice()).unwrap();
                }
                Op::Delete(k) => {
                    self.db.delete(&mut w, k.as_slice()).unwrap();
                }
            }
        }
        w.commit().unwrap();
        found
    }
    fn scan_prefixes(&mut self, prefixes: &[[u8; 10]]) -> (u64, u64) {
        let r = self.env.read_txn().unwrap();
        let (mut n, mut bytes) = (0, 0);
        for p in prefixes {
            for item in self.db.prefix_iter(&r, p.as_slice()).unwrap() {
                let (_k, v) = item.unwrap();
                n += 1;
                bytes += v.len() as u64;
            }
        }
        (n, bytes)
    }
    fn close(self: Box<Self>) {
        self.env.force_sync().unwrap();
    }
}

// ---------------------------------------------------------------------------------------
// Measurement helpers

fn proc_status() -> std::collections::HashMap<String, u64> {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    s.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            let kb = v.trim().strip_suffix(" kB")?.trim().parse().ok()?;
            Some((k.to_string(), kb))
        })
        .collect()
}

fn mem_line(tag: &str) -> String {
    let s = proc_status();
    let mb = |k: &str| s.get(k).copied().unwrap_or(0) as f64 / 1024.0;
    let line = format!(
        "[{tag}] VmRSS {:.0} MB (anon {:.0}, file {:.0}), VmHWM {:.0} MB",
        mb("VmRSS"),
        mb("RssAnon"),
        mb("RssFile"),
        mb("VmHWM")
    );
    eprintln!("{line}");
    line
}

/// (apparent bytes, allocated bytes) of everything under dir.
fn disk_usage(dir: &Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let (mut len, mut alloc) = (0, 0);
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let m = e.metadata().unwrap();
            if m.is_dir() {
                let (l, a) = disk_usage(&e.path());
                len += l;
                alloc += a;
            } else {
                len += m.len();
                alloc += m.blocks() * 512;
            }
        }
    }
    (len, alloc)
}

struct Args {
    store: String,
    n: u64,
    rmw_ops: u64,
    scans: u64,
    cache_mb: usize,
    memtable_mb: Option<u64>,
    dir: PathBuf,
    keep: bool,
}

fn parse_args() -> Args {
    let mut it = std::env::args().skip(1);
    let usage = "usage: store-choice <redb|fjall|heed> <N> [--rmw-ops N] [--scans N] [--cache-mb MB] [--memtable-mb MB (fjall only)] [--dir PATH] [--keep]";
    let store = it.next().expect(usage);
    let n: u64 = it.next().expect(usage).replace('_', "").parse().expect(usage);
    let mut a = Args {
        store,
        n,
        rmw_ops: 1_000_000,
        scans: 10_000,
        cache_mb: 64,
        memtable_mb: None,
        dir: PathBuf::from("/tmp/store-choice-data"),
        keep: false,
    };
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--rmw-ops" => a.rmw_ops = it.next().expect(usage).parse().expect(usage),
            "--scans" => a.scans = it.next().expect(usage).parse().expect(usage),
            "--cache-mb" => a.cache_mb = it.next().expect(usage).parse().expect(usage),
            "--memtable-mb" => a.memtable_mb = Some(it.next().expect(usage).parse().expect(usage)),
            "--dir" => a.dir = PathBuf::from(it.next().expect(usage)),
            "--keep" => a.keep = true,
            _ => panic!("{usage}"),
        }
    }
    a
}

fn run(store: Box<dyn Store + '_>, a: &Args, dir: &Path) {
    let mut store = store;
    let keys = Keys::new(a.n);
    let t_all = Instant::now();

    // 1 + 5. Bulk load in write batches of 1000.
    let t = Instant::now();
    let mut batch = Vec::with_capacity(BATCH);
    let mut i = 0;
    let mut next_report = a.n / 10;
    while i < a.n {
        batch.clear();
        let end = (i + BATCH as u64).min(a.n);
        for j in i..end {
            batch.push((keys.key(j), initial_value(j)));
        }
        store.load_batch(&batch);
        i = end;
        if i >= next_report && a.n >= 1_000_000 {
            eprintln!("  loaded {i} keys in {:.1}s", t.elapsed().as_secs_f64());
            next_report += a.n / 10;
        }
    }
    let load_s = t.elapsed().as_secs_f64();
    let load_kps = a.n as f64 / load_s;
    let mem_after_load = mem_line("after load");

    // 2. Read-modify-write: 1% deletes, else get + put, one commit per 1000 ops.
    let mut rng = Rng(0x1234_5678_9ABC_DEF1);
    let t = Instant::now();
    let mut ops = Vec::with_capacity(BATCH);
    let mut done = 0;
    let mut found = 0;
    while done < a.rmw_ops {
        ops.clear();
        let end = (done + BATCH as u64).min(a.rmw_ops);
        for o in done..end {
            let i = rng.next() % a.n;
            if o % 100 == 99 {
                ops.push(Op::Delete(keys.key(i)));
            } else {
                ops.push(Op::Rmw(keys.key(i), i));
            }
        }
        found += store.rmw_batch(&ops);
        done = end;
    }
    let rmw_s = t.elapsed().as_secs_f64();
    let rmw_ops = a.rmw_ops as f64 / rmw_s;
    let mem_after_rmw = mem_line("after rmw");

    // 3. Prefix scans: each prefix is one entity with WINDOWS (=10) keys.
    let t = Instant::now();
    let mut entries = 0;
    let mut value_bytes = 0;
    let mut prefixes = Vec::with_capacity(BATCH);
    let mut done = 0;
    while done < a.scans {
        prefixes.clear();
        let end = (done + BATCH as u64).min(a.scans);
        for _ in done..end {
            prefixes.push(keys.prefix(rng.next() % keys.entities));
        }
        let (n, b) = store.scan_prefixes(&prefixes);
        entries += n;
        value_bytes += b;
        done = end;
    }
    let scan_s = t.elapsed().as_secs_f64();
    let scans_ps = a.scans as f64 / scan_s;
    let mem_after_scan = mem_line("after scans");

    let (disk_open, _) = disk_usage(dir);
    let t = Instant::now();
    store.close();
    let close_s = t.elapsed().as_secs_f64();
    let (disk_len, disk_alloc) = disk_usage(dir);
    let st = proc_status();
    let mb = |k: &str| st.get(k).copied().unwrap_or(0) as f64 / 1024.0;

    println!("store={} n={} cache_mb={} memtable_mb={:?}", a.store, a.n, a.cache_mb, a.memtable_mb);
    println!("  load:  {:.0} keys/s ({:.2} s total, {:.2} s per million)", load_kps, load_s, load_s / (a.n as f64 / 1e6));
    println!("  rmw:   {:.0} ops/s ({} ops, {:.2} s, {} found)", rmw_ops, a.rmw_ops, rmw_s, found);
    println!("  scan:  {:.0} scans/s ({} scans, {} entries, {:.1} entries/scan, {} value bytes)", scans_ps, a.scans, entries, entries as f64 / a.scans as f64, value_bytes);
    println!("  {mem_after_load}\n  {mem_after_rmw}\n  {mem_after_scan}");
    println!(
        "  end: VmHWM {:.0} MB, VmRSS {:.0} MB (anon {:.0} MB, file-backed {:.0} MB)",
        mb("VmHWM"),
        mb("VmRSS"),
        mb("RssAnon"),
        mb("RssFile")
    );
    println!(
        "  disk: {:.0} MB apparent / {:.0} MB allocated after close ({:.0} MB while open); close took {:.2} s; total {:.1} s",
        disk_len as f64 / 1048576.0,
        disk_alloc as f64 / 1048576.0,
        disk_open as f64 / 1048576.0,
        close_s,
        t_all.elapsed().as_secs_f64()
    );
    println!(
        "RESULT\t{}\t{}\tload_kps={:.0}\ts_per_M={:.2}\trmw_ops={:.0}\tscans={:.0}\thwm_mb={:.0}\trss_mb={:.0}\tanon_mb={:.0}\tfile_mb={:.0}\tdisk_mb={:.0}",
        a.store,
        a.n,
        load_kps,
        load_s / (a.n as f64 / 1e6),
        rmw_ops,
        scans_ps,
        mb("VmHWM"),
        mb("VmRSS"),
        mb("RssAnon"),
        mb("RssFile"),
        disk_alloc as f64 / 1048576.0
    );
}

fn main() {
    let a = parse_args();
    let dir = a.dir.join(format!("{}-{}", a.store, a.n));
    let _ = std::fs::remove_dir_all(&dir);
    let cache = a.cache_mb << 20;
    match a.store.as_str() {
        "redb" => run(Box::new(RedbStore::open(&dir, cache)), &a, &dir),
        "fjall" => run(Box::new(FjallStore::open(&dir, cache, a.memtable_mb)), &a, &dir),
        "heed" => {
            // LMDB has no cache of its own: it maps the file and relies on the OS page cache.
            let env = HeedStore::env(&dir);
            run(Box::new(HeedStore::open(&env)), &a, &dir);
            drop(env);
        }
        other => panic!("unknown store {other}; use redb, fjall or heed"),
    }
    if !a.keep {
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
