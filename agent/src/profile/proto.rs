//! The pprof protobuf (`profile.proto` of github.com/google/pprof), written by hand: the handful of
//! messages a CPU profile needs, with no code generator and no protobuf runtime in the host.

use std::collections::BTreeMap;

use super::symbols::{Object, Symbol};

/// Protobuf writer: varints and length-delimited fields.
#[derive(Default)]
struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.buf.push((v as u8 & 0x7f) | 0x80);
            v >>= 7;
        }
        self.buf.push(v as u8);
    }

    /// A varint field (proto3: zero is not written).
    fn uint(&mut self, field: u32, v: u64) {
        if v != 0 {
            self.varint(u64::from(field) << 3);
            self.varint(v);
        }
    }

    fn int(&mut self, field: u32, v: i64) {
        self.uint(field, v as u64);
    }

    fn bytes(&mut self, field: u32, b: &[u8]) {
        self.varint((u64::from(field) << 3) | 2);
        self.varint(b.len() as u64);
        self.buf.extend_from_slice(b);
    }

    fn message(&mut self, field: u32, m: Writer) {
        self.bytes(field, &m.buf);
    }

    fn packed(&mut self, field: u32, vs: impl IntoIterator<Item = u64>) {
        let mut inner = Writer::default();
        for v in vs {
            inner.varint(v);
        }
        if !inner.buf.is_empty() {
            self.bytes(field, &inner.buf);
        }
    }
}

/// The string table: index 0 is "".
#[derive(Default)]
struct Strings {
    index: BTreeMap<String, i64>,
    list: Vec<String>,
}

impl Strings {
    fn id(&mut self, s: &str) -> i64 {
        if self.list.is_empty() {
            self.list.push(String::new());
            self.index.insert(String::new(), 0);
        }
        if let Some(&i) = self.index.get(s) {
            return i;
        }
        let i = self.list.len() as i64;
        self.list.push(s.to_owned());
        self.index.insert(s.to_owned(), i);
        i
    }
}

/// One distinct stack of one thread and how many samples had it.
pub(crate) struct Stack<'a> {
    /// Innermost first, as recorded: the first frame is an instruction pointer, the others return
    /// addresses.
    pub(crate) frames: &'a [u64],
    pub(crate) count: u64,
    /// The kernel thread id the samples interrupted.
    pub(crate) tid: u64,
}

/// Prefix of the agent's own thread names (`vigil-agent`, `vigil-train`, ...): samples on them are
/// labelled `owner=vigil`, every other `owner=host`.
pub(crate) const AGENT_THREAD_PREFIX: &str = "vigil-";

/// What a profile is made of.
pub(crate) struct Input<'a> {
    /// Distinct stacks per thread.
    pub(crate) stacks: Vec<Stack<'a>>,
    /// Thread names by id (`/proc/self/task/ID/comm` when the profile ended; a thread that ended
    /// before is named by its id).
    pub(crate) threads: &'a BTreeMap<u64, String>,
    /// Free-form notes for the reader (`pprof -comments`): e.g. why the stacks are cut.
    pub(crate) comments: &'a [String],
    /// Samples recorded under no stack of their own (name, count): samples the table had no room
    /// for, samples dropped while another thread was recording.
    pub(crate) unattributed: Vec<(&'static str, u64)>,
    pub(crate) objects: &'a [Object],
    /// Names by lookup address (see [`lookup_address`]).
    pub(crate) symbols: &'a BTreeMap<u64, Symbol>,
    pub(crate) start_unix_nanos: i64,
    pub(crate) duration_nanos: i64,
    /// Nanoseconds of CPU time one sample stands for.
    pub(crate) period_nanos: i64,
}

/// The address to name for frame `i` of a stack: the interrupted instruction itself for the first,
/// one byte back into the call instruction for a return address (which points past the call, and
/// may be the first byte of the next function).
pub(crate) fn lookup_address(i: usize, frame: u64) -> u64 {
    if i == 0 {
        frame
    } else {
        frame.saturating_sub(1)
    }
}

/// The encoded (uncompressed) `Profile` message and its total sample count.
pub(crate) fn encode(input: &Input<'_>) -> (Vec<u8>, u64) {
    let mut strings = Strings::default();
    let mut profile = Writer::default();
    let value_type = |strings: &mut Strings, ty: &str, unit: &str| {
        let mut w = Writer::default();
        w.int(1, strings.id(ty));
        w.int(2, strings.id(unit));
        w
    };
    profile.message(1, value_type(&mut strings, "samples", "count"));
    profile.message(1, value_type(&mut strings, "cpu", "nanoseconds"));

    // Locations by lookup address, functions by name; ids from 1.
    let mut locations: BTreeMap<u64, u64> = BTreeMap::new();
    let mut functions: BTreeMap<String, (u64, String)> = BTreeMap::new();
    let mut used_objects: BTreeMap<usize, u64> = BTreeMap::new();
    // Per object: whether every location in it was named (then, and only then, `has_functions`).
    let mut all_named: BTreeMap<usize, bool> = BTreeMap::new();
    let mut samples = Writer::default();
    let mut total = 0u64;
    let mut sample = |ids: Vec<u64>, count: u64, labels: Vec<Writer>, samples: &mut Writer| {
        let mut s = Writer::default();
        s.packed(1, ids);
        let count_i = i64::try_from(count).unwrap_or(i64::MAX);
        s.packed(
            2,
            [count_i, count_i.saturating_mul(input.period_nanos)].map(|v| v as u64),
        );
        for l in labels {
            s.message(3, l);
        }
        samples.message(2, s);
        total += count;
    };
    for stack in &input.stacks {
        let mut ids = Vec::with_capacity(stack.frames.len());
        for (i, &frame) in stack.frames.iter().enumerate() {
            let a = lookup_address(i, frame);
            let next = locations.len() as u64 + 1;
            ids.push(*locations.entry(a).or_insert(next));
        }
        // Labels: the thread's name and id, and whose thread it is (`pprof -tagfocus owner=host`
        // leaves the agent's own threads out).
        let name = input
            .threads
            .get(&stack.tid)
            .cloned()
            .unwrap_or_else(|| format!("tid {}", stack.tid));
        let owner = if name.starts_with(AGENT_THREAD_PREFIX) {
            "vigil"
        } else {
            "host"
        };
        let text = |strings: &mut Strings, key: &str, value: &str| {
            let mut l = Writer::default();
            l.int(1, strings.id(key));
            l.int(2, strings.id(value));
            l
        };
        let mut id = Writer::default();
        id.int(1, strings.id("thread_id"));
        id.int(3, i64::try_from(stack.tid).unwrap_or(0));
        let labels = vec![
            text(&mut strings, "thread", &name),
            id,
            text(&mut strings, "owner", owner),
        ];
        sample(ids, stack.count, labels, &mut samples);
    }
    // Pseudo-locations for the unattributed samples, after the real ones (address 0, own function).
    let mut pseudo: Vec<(u64, &'static str)> = Vec::new();
    for &(name, count) in &input.unattributed {
        if count == 0 {
            continue;
        }
        let id = locations.len() as u64 + pseudo.len() as u64 + 1;
        pseudo.push((id, name));
        sample(vec![id], count, Vec::new(), &mut samples);
    }

    // Locations, with their mapping and function.
    let mut location_msgs = Vec::with_capacity(locations.len() + pseudo.len());
    for (&address, &id) in &locations {
        let symbol = input.symbols.get(&address);
        let name = symbol.map_or_else(|| format!("0x{address:x}"), |s| s.name.clone());
        let system_name = symbol.map(|s| s.system_name.clone()).unwrap_or_default();
        let next = functions.len() as u64 + 1;
        let function_id = functions.entry(name).or_insert((next, system_name)).0;
        let mut l = Writer::default();
        l.uint(1, id);
        if let Some((o, s)) = symbol.and_then(|s| s.object.map(|o| (o, s))) {
            let next = used_objects.len() as u64 + 1;
            l.uint(2, *used_objects.entry(o).or_insert(next));
            *all_named.entry(o).or_insert(true) &= !s.system_name.is_empty();
        }
        l.uint(3, address);
        let mut line = Writer::default();
        line.uint(1, function_id);
        l.message(4, line);
        location_msgs.push((id, l));
    }
    for &(id, name) in &pseudo {
        let next = functions.len() as u64 + 1;
        let function_id = functions
            .entry(name.to_owned())
            .or_insert((next, String::new()))
            .0;
        let mut l = Writer::default();
        l.uint(1, id);
        let mut line = Writer::default();
        line.uint(1, function_id);
        l.message(4, line);
        location_msgs.push((id, l));
    }
    let mut mappings: Vec<(u64, usize)> = used_objects.iter().map(|(&o, &id)| (id, o)).collect();
    mappings.sort_unstable();
    for (id, o) in mappings {
        let Some(obj) = input.objects.get(o) else {
            continue;
        };
        let mut m = Writer::default();
        m.uint(1, id);
        m.uint(2, obj.start);
        m.uint(3, obj.end);
        m.uint(4, obj.file_offset);
        m.int(5, strings.id(&obj.path));
        m.int(6, strings.id(&obj.build_id));
        // has_functions only where every frame was named (symbol table only: no file names or
        // lines): elsewhere `pprof` names what it can from the file at the path and build id.
        if all_named.get(&o).copied().unwrap_or(false) {
            m.uint(7, 1);
        }
        profile.message(3, m);
    }
    profile.buf.extend_from_slice(&samples.buf);
    location_msgs.sort_unstable_by_key(|(id, _)| *id);
    for (_, l) in location_msgs {
        profile.message(4, l);
    }
    let mut function_msgs: Vec<(u64, Writer)> = Vec::with_capacity(functions.len());
    for (name, (id, system_name)) in &functions {
        let mut f = Writer::default();
        f.uint(1, *id);
        f.int(2, strings.id(name));
        f.int(3, strings.id(system_name));
        function_msgs.push((*id, f));
    }
    function_msgs.sort_unstable_by_key(|(id, _)| *id);
    for (_, f) in function_msgs {
        profile.message(5, f);
    }
    profile.int(9, input.start_unix_nanos);
    profile.int(10, input.duration_nanos);
    let period_type = value_type(&mut strings, "cpu", "nanoseconds");
    profile.message(11, period_type);
    profile.int(12, input.period_nanos);
    let comments: Vec<u64> = input
        .comments
        .iter()
        .map(|c| strings.id(c) as u64)
        .collect();
    profile.packed(13, comments);
    for s in &strings.list {
        profile.bytes(6, s.as_bytes());
    }
    (profile.buf, total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_are_little_endian_base_128() {
        let mut w = Writer::default();
        w.varint(1);
        w.varint(300);
        w.varint(u64::MAX);
        assert_eq!(
            w.buf,
            [
                1, 0xac, 0x02, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01
            ]
        );
        let mut w = Writer::default();
        w.uint(3, 0);
        assert!(w.buf.is_empty(), "zero is the default: not written");
        w.bytes(6, b"ab");
        assert_eq!(w.buf, [0x32, 2, b'a', b'b']);
    }
}
