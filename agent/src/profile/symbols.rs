//! Names for a profile's addresses from the ELF symbol tables of the loaded objects, read from their
//! files at the end of each profile and dropped after it.
//!
//! Symbol-table-only on purpose: the debug-info symboliser pprof-rs used (the `backtrace` crate)
//! parses the binary's DWARF and keeps it for the life of the process (tens of MB for a large
//! binary). Here the objects come from `dl_iterate_phdr` (load bias, executable segments, the GNU
//! build id from the loaded notes), and each object's `.symtab` (else `.dynsym`) is streamed from its
//! file in fixed-size chunks: memory grows with the number of distinct addresses in the profile, not
//! with the size of the binary. What this gives up: file and line numbers, and inlined functions
//! (an inlined function's samples land on the function it was inlined into). An address no symbol
//! covers is named `object+0xoffset`. Every location keeps its mapping and build id, but each
//! mapping is marked as already symbolised (`has_functions`), so `go tool pprof` does not resolve
//! such an address again against the binary (Issue 34 asks for the flag only where names were found).

use std::collections::BTreeMap;
use std::os::unix::fs::FileExt;

/// One loaded object (the executable, a shared library).
#[derive(Debug, Clone)]
pub(crate) struct Object {
    /// Its file as tools should name it: the executable's real path (what `pprof` opens to name
    /// frames this process could not).
    pub(crate) path: String,
    /// The file to read its symbols from: `/proc/self/exe` for the executable (the running image
    /// even if the file at its path was replaced since), else `path`.
    pub(crate) file: String,
    /// What to subtract from a runtime address to get the address in the file's symbol table.
    pub(crate) bias: u64,
    /// Lowest and highest runtime address of its loaded segments.
    pub(crate) start: u64,
    pub(crate) end: u64,
    /// File offset of its first loaded segment (the pprof mapping's `file_offset`).
    pub(crate) file_offset: u64,
    /// Hex GNU build id, empty where it has none.
    pub(crate) build_id: String,
}

/// A resolved address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Symbol {
    /// Demangled function name (without the Rust hash), or `object+0xoffset`.
    pub(crate) name: String,
    /// The name as the symbol table spells it (empty where none was found).
    pub(crate) system_name: String,
    /// Index into the objects, if an object holds the address.
    pub(crate) object: Option<usize>,
}

/// The objects loaded in this process now.
pub(crate) fn loaded_objects() -> Vec<Object> {
    let mut out: Vec<Object> = Vec::new();
    // SAFETY: the callback only reads what dl_iterate_phdr passes it for the duration of the call
    // (the header array and the loaded PT_NOTE segments, mapped while the object is loaded;
    // dl_iterate_phdr holds the loader's lock meanwhile) and pushes to `out` through `data`.
    unsafe {
        libc::dl_iterate_phdr(Some(each_object), (&raw mut out).cast());
    }
    if let Some(exe) = out.first_mut().filter(|o| o.path == SELF_EXE)
        && let Ok(real) = std::fs::read_link(SELF_EXE)
    {
        exe.path = real.to_string_lossy().into_owned();
    }
    out
}

/// The running executable's image.
const SELF_EXE: &str = "/proc/self/exe";

unsafe extern "C" fn each_object(
    info: *mut libc::dl_phdr_info,
    _size: libc::size_t,
    data: *mut libc::c_void,
) -> libc::c_int {
    // SAFETY: see `loaded_objects`.
    let (info, out) = unsafe { (&*info, &mut *data.cast::<Vec<Object>>()) };
    let name = if info.dlpi_name.is_null() {
        String::new()
    } else {
        // SAFETY: a NUL-terminated name owned by the loader.
        unsafe { std::ffi::CStr::from_ptr(info.dlpi_name) }
            .to_string_lossy()
            .into_owned()
    };
    let path = if name.is_empty() {
        if out.is_empty() {
            SELF_EXE.to_owned()
        } else {
            // The vDSO on some systems: no file to read.
            return 0;
        }
    } else {
        name
    };
    if info.dlpi_phdr.is_null() {
        return 0;
    }
    // SAFETY: `dlpi_phnum` program headers at `dlpi_phdr`.
    let headers =
        unsafe { std::slice::from_raw_parts(info.dlpi_phdr, usize::from(info.dlpi_phnum)) };
    let bias = info.dlpi_addr;
    let (mut start, mut end, mut file_offset) = (u64::MAX, 0u64, 0u64);
    let mut build_id = String::new();
    for h in headers {
        if h.p_type == libc::PT_LOAD {
            let s = bias.wrapping_add(h.p_vaddr);
            if s < start {
                start = s;
                file_offset = h.p_offset;
            }
            end = end.max(s.wrapping_add(h.p_memsz));
        } else if h.p_type == libc::PT_NOTE && build_id.is_empty() {
            // SAFETY: a PT_NOTE segment is loaded at bias + p_vaddr for p_memsz bytes.
            let notes = unsafe {
                std::slice::from_raw_parts(
                    bias.wrapping_add(h.p_vaddr) as *const u8,
                    usize::try_from(h.p_memsz).unwrap_or(0),
                )
            };
            build_id = gnu_build_id(notes);
        }
    }
    if start < end {
        out.push(Object {
            file: path.clone(),
            path,
            bias,
            start,
            end,
            file_offset,
            build_id,
        });
    }
    0
}

/// The GNU build id (hex) in a run of ELF notes, empty if there is none.
fn gnu_build_id(mut notes: &[u8]) -> String {
    let u32_at = |b: &[u8], i: usize| -> Option<usize> {
        let s: [u8; 4] = b.get(i..i + 4)?.try_into().ok()?;
        usize::try_from(u32::from_le_bytes(s)).ok()
    };
    let align = |n: usize| n.div_ceil(4) * 4;
    while notes.len() >= 12 {
        let (Some(namesz), Some(descsz), Some(kind)) =
            (u32_at(notes, 0), u32_at(notes, 4), u32_at(notes, 8))
        else {
            break;
        };
        let name_end = 12 + align(namesz);
        let desc_end = name_end + align(descsz);
        if desc_end > notes.len() {
            break;
        }
        if kind == 3 && namesz == 4 && &notes[12..16] == b"GNU\0" {
            return notes[name_end..name_end + descsz]
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
        }
        notes = &notes[desc_end..];
    }
    String::new()
}

/// Names `addresses` (runtime addresses to look up: for a return address, one byte back into the
/// call). Unresolved addresses get `object+0xoffset` or `0x…`.
pub(crate) fn resolve(objects: &[Object], addresses: &[u64]) -> BTreeMap<u64, Symbol> {
    let mut by_object: BTreeMap<usize, Vec<u64>> = BTreeMap::new();
    let mut out = BTreeMap::new();
    for &a in addresses {
        match objects.iter().position(|o| (o.start..o.end).contains(&a)) {
            Some(i) => by_object.entry(i).or_default().push(a),
            None => {
                out.insert(
                    a,
                    Symbol {
                        name: format!("0x{a:x}"),
                        system_name: String::new(),
                        object: None,
                    },
                );
            }
        }
    }
    for (i, mut addrs) in by_object {
        let o = &objects[i];
        addrs.sort_unstable();
        addrs.dedup();
        let file_addrs: Vec<u64> = addrs.iter().map(|a| a.wrapping_sub(o.bias)).collect();
        let names = match std::fs::File::open(&o.file) {
            Ok(f) => symbol_names(&f, &file_addrs).unwrap_or_default(),
            Err(_) => Vec::new(),
        };
        let base = o.path.rsplit('/').next().unwrap_or(&o.path).to_owned();
        for (k, a) in addrs.iter().enumerate() {
            let raw = names.get(k).cloned().flatten();
            let symbol = match raw {
                Some(raw) => Symbol {
                    name: format!("{:#}", rustc_demangle::demangle(&raw)),
                    system_name: raw,
                    object: Some(i),
                },
                None => Symbol {
                    name: format!("{base}+0x{:x}", file_addrs[k]),
                    system_name: String::new(),
                    object: Some(i),
                },
            };
            out.insert(*a, symbol);
        }
    }
    out
}

/// Section header fields the lookup needs.
#[derive(Clone, Copy)]
struct Section {
    kind: u32,
    offset: u64,
    size: u64,
    link: u32,
    entsize: u64,
}

fn le_u16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}
fn le_u32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}
fn le_u64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

const SHT_SYMTAB: u32 = 2;
const SHT_DYNSYM: u32 = 11;
const STT_FUNC: u8 = 2;
const STT_GNU_IFUNC: u8 = 10;
/// Symbol table read per chunk.
const CHUNK: usize = 64 * 1024;
/// Longest symbol name read.
const MAX_NAME: usize = 4096;

/// The raw name of the function symbol covering each of `addrs` (file addresses, sorted), from a
/// 64-bit little-endian ELF file's `.symtab`, else its `.dynsym`. `None` where the file is not such
/// an ELF file.
fn symbol_names(f: &std::fs::File, addrs: &[u64]) -> Option<Vec<Option<String>>> {
    let mut header = [0u8; 64];
    f.read_exact_at(&mut header, 0).ok()?;
    // 64-bit (class 2), little-endian (data 1).
    if &header[..4] != b"\x7fELF" || header[4] != 2 || header[5] != 1 {
        return None;
    }
    let shoff = le_u64(&header, 0x28)?;
    let shentsize = usize::from(le_u16(&header, 0x3a)?);
    let shnum = usize::from(le_u16(&header, 0x3c)?);
    // ELF64 section headers are 64 bytes and symbols 24: anything else is not a file to trust with
    // an allocation sized from its header.
    if shentsize != 64 || shnum == 0 {
        return None;
    }
    let mut raw = vec![0u8; shentsize * shnum];
    f.read_exact_at(&mut raw, shoff).ok()?;
    let sections: Vec<Section> = raw
        .chunks_exact(shentsize)
        .map(|s| {
            Some(Section {
                kind: le_u32(s, 4)?,
                offset: le_u64(s, 0x18)?,
                size: le_u64(s, 0x20)?,
                link: le_u32(s, 0x28)?,
                entsize: le_u64(s, 0x38)?,
            })
        })
        .collect::<Option<_>>()?;
    let table = sections
        .iter()
        .find(|s| s.kind == SHT_SYMTAB)
        .or_else(|| sections.iter().find(|s| s.kind == SHT_DYNSYM))?;
    let strings = *sections.get(usize::try_from(table.link).ok()?)?;
    let entsize = usize::try_from(table.entsize).ok()?;
    if entsize != 24 {
        return None;
    }
    // Best symbol so far per address: (its size, its name's offset).
    let mut best: Vec<Option<(u64, u32)>> = vec![None; addrs.len()];
    let per_chunk = (CHUNK / entsize).max(1);
    let mut chunk = vec![0u8; per_chunk * entsize];
    let total = usize::try_from(table.size).ok()? / entsize;
    let mut done = 0;
    let mut at = table.offset;
    while done < total {
        let n = per_chunk.min(total - done);
        let buf = &mut chunk[..n * entsize];
        f.read_exact_at(buf, at).ok()?;
        at += (n * entsize) as u64;
        done += n;
        for sym in buf.chunks_exact(entsize) {
            let info = sym[4];
            let kind = info & 0xf;
            if kind != STT_FUNC && kind != STT_GNU_IFUNC {
                continue;
            }
            let (Some(name), Some(value), Some(size)) =
                (le_u32(sym, 0), le_u64(sym, 8), le_u64(sym, 16))
            else {
                continue;
            };
            if value == 0 || name == 0 {
                continue;
            }
            let end = value.saturating_add(size.max(1));
            let from = addrs.partition_point(|&a| a < value);
            let to = addrs.partition_point(|&a| a < end);
            for slot in &mut best[from..to] {
                // The smallest covering symbol wins (a sized one over a zero-sized one).
                if slot.is_none_or(|(s, _)| size.max(1) < s) {
                    *slot = Some((size.max(1), name));
                }
            }
        }
    }
    let mut out = Vec::with_capacity(addrs.len());
    let mut name_buf = vec![0u8; 256];
    for b in best {
        out.push(b.and_then(|(_, off)| {
            read_name(
                f,
                strings.offset.checked_add(u64::from(off))?,
                &mut name_buf,
            )
        }));
    }
    Some(out)
}

/// The NUL-terminated string at `at` (at most [`MAX_NAME`] bytes).
fn read_name(f: &std::fs::File, at: u64, buf: &mut [u8]) -> Option<String> {
    let mut name = Vec::new();
    while name.len() < MAX_NAME {
        let n = f.read_at(buf, at + name.len() as u64).ok()?;
        if n == 0 {
            break;
        }
        let got = &buf[..n];
        if let Some(end) = got.iter().position(|&b| b == 0) {
            name.extend_from_slice(&got[..end]);
            return Some(String::from_utf8_lossy(&name).into_owned());
        }
        name.extend_from_slice(got);
    }
    (!name.is_empty()).then(|| String::from_utf8_lossy(&name).into_owned())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[inline(never)]
    fn vigil_symbols_test_target(x: u64) -> u64 {
        std::hint::black_box(x).wrapping_mul(3)
    }

    #[test]
    fn a_function_of_this_binary_and_one_of_libc_are_named_and_nothing_is_named_for_a_wild_address()
    {
        let objects = loaded_objects();
        assert!(!objects.is_empty());
        // The executable is named by its real path (what pprof opens), read through its image.
        assert_eq!(
            std::path::Path::new(&objects[0].path),
            std::env::current_exe().unwrap()
        );
        assert_eq!(objects[0].file, "/proc/self/exe");
        assert!(
            !objects[0].build_id.is_empty(),
            "the executable has a GNU build id"
        );
        let ours = vigil_symbols_test_target as *const () as u64 + 1;
        let theirs = libc::getpid as *const () as u64;
        let wild = 0x10;
        let got = resolve(&objects, &[ours, theirs, wild]);
        assert!(
            got[&ours].name.ends_with("vigil_symbols_test_target"),
            "{:?}",
            got[&ours]
        );
        assert!(got[&ours].system_name.contains("vigil_symbols_test_target"));
        assert_eq!(got[&ours].object, Some(0));
        assert!(got[&theirs].name.contains("getpid"), "{:?}", got[&theirs]);
        assert_eq!(got[&wild].name, "0x10");
        assert_eq!(got[&wild].object, None);
        let _ = vigil_symbols_test_target(1);
    }

    #[test]
    fn a_damaged_or_foreign_file_gives_no_names_and_no_allocation_sized_from_its_header() {
        let dir = std::env::temp_dir().join(format!("vigil-symbols-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("odd.elf");
        let mut header = vec![0u8; 64];
        header[..6].copy_from_slice(b"\x7fELF\x02\x01");
        header[0x28..0x30].copy_from_slice(&64u64.to_le_bytes());
        // 65,535 section headers of 65,535 bytes each: 4 GiB if believed.
        header[0x3a..0x3c].copy_from_slice(&u16::MAX.to_le_bytes());
        header[0x3c..0x3e].copy_from_slice(&u16::MAX.to_le_bytes());
        std::fs::write(&path, &header).unwrap();
        let f = std::fs::File::open(&path).unwrap();
        assert_eq!(symbol_names(&f, &[0x1000]), None);
        // Standard sizes, but the section headers are past the end of the file.
        header[0x3a..0x3c].copy_from_slice(&64u16.to_le_bytes());
        header[0x3c..0x3e].copy_from_slice(&3u16.to_le_bytes());
        std::fs::write(&path, &header).unwrap();
        let f = std::fs::File::open(&path).unwrap();
        assert_eq!(symbol_names(&f, &[0x1000]), None);
        // Not ELF at all.
        std::fs::write(&path, b"#!/bin/sh\n").unwrap();
        let f = std::fs::File::open(&path).unwrap();
        assert_eq!(symbol_names(&f, &[0x1000]), None);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn build_ids_are_read_from_well_formed_notes_only() {
        let mut note = Vec::new();
        note.extend_from_slice(&4u32.to_le_bytes());
        note.extend_from_slice(&3u32.to_le_bytes());
        note.extend_from_slice(&3u32.to_le_bytes());
        note.extend_from_slice(b"GNU\0");
        note.extend_from_slice(&[0xab, 0xcd, 0xef, 0]);
        assert_eq!(gnu_build_id(&note), "abcdef");
        assert_eq!(gnu_build_id(&note[..18]), "");
        assert_eq!(gnu_build_id(&[]), "");
    }
}
