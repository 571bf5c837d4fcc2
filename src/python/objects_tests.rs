//! Unit tests of `objects.rs` over synthetic memory images of each layout (the `Image`
//! builder is shared with other modules' tests).
use super::*;
use crate::model::PyVersion;
use crate::process::memory::LocalMemory;
use crate::python::offsets::{offsets_for, SUPPORTED_SERIES};

/// A synthetic target address space: objects laid out as a given version would.
pub(crate) struct Image {
    pub base: Addr,
    pub bytes: Vec<u8>,
    pub o: PyOffsets,
    types: std::collections::HashMap<u64, Addr>,
}

impl Image {
    pub fn new(series: (u8, u8)) -> Image {
        let o = offsets_for(PyVersion::new(series.0, series.1, 0)).expect("row");
        Image {
            base: 0x10_0000,
            bytes: Vec::new(),
            o,
            types: Default::default(),
        }
    }

    /// `len` zeroed bytes, 16-aligned (and 32 spare in front, for pre-headers).
    pub fn alloc(&mut self, len: usize) -> Addr {
        let start = (self.bytes.len() + 32 + 15) & !15;
        self.bytes.resize(start + len, 0);
        self.base + start as u64
    }

    pub fn put(&mut self, at: Addr, value: u64) {
        let i = (at - self.base) as usize;
        self.bytes[i..i + 8].copy_from_slice(&value.to_ne_bytes());
    }

    pub fn put_u8(&mut self, at: Addr, value: u8) {
        self.bytes[(at - self.base) as usize] = value;
    }

    /// A type object with these flags (one per distinct flag set).
    pub fn type_with(&mut self, flags: u64) -> Addr {
        if let Some(&t) = self.types.get(&flags) {
            return t;
        }
        let t = self.alloc(1024);
        self.put(t + self.o.type_flags, flags);
        self.put(t + self.o.type_basicsize, 16);
        self.types.insert(flags, t);
        t
    }

    pub fn object(&mut self, flags: u64, len: usize) -> Addr {
        let tp = self.type_with(flags);
        let obj = self.alloc(len.max(16));
        self.put(obj + self.o.object_type, tp);
        obj
    }

    /// A str (2.7: byte string; 3.x: compact ASCII or UCS-2).
    pub fn string(&mut self, text: &str) -> Addr {
        let o = self.o.clone();
        if o.string_model == StringModel::Bytes27 {
            let obj = self.object(TPFLAGS_BYTES_SUBCLASS, o.bytes_data as usize + text.len());
            self.put(obj + o.bytes_size, text.len() as u64);
            let i = (obj + o.bytes_data - self.base) as usize;
            self.bytes[i..i + text.len()].copy_from_slice(text.as_bytes());
            return obj;
        }
        let units: Vec<u16> = text.encode_utf16().collect();
        let ascii = text.is_ascii();
        let (data, width) = if ascii {
            (o.unicode_ascii_data, 1)
        } else {
            (o.unicode_compact_data, 2)
        };
        let obj = self.object(
            TPFLAGS_UNICODE_SUBCLASS,
            (data + 2 * units.len() as u64) as usize + 2,
        );
        self.put(obj + o.unicode_length, units.len() as u64);
        let state: u32 = ((width as u32) << 2) | (1 << 5) | (u32::from(ascii) << 6);
        let i = (obj + o.unicode_state - self.base) as usize;
        self.bytes[i..i + 4].copy_from_slice(&state.to_ne_bytes());
        let i = (obj + data - self.base) as usize;
        for (n, u) in units.iter().enumerate() {
            if ascii {
                self.bytes[i + n] = *u as u8;
            } else {
                self.bytes[i + 2 * n..i + 2 * n + 2].copy_from_slice(&u.to_ne_bytes());
            }
        }
        obj
    }

    /// An int as the version stores it (2.7: `int` for values that fit a long).
    pub fn int(&mut self, value: i128) -> Addr {
        let o = self.o.clone();
        if let (Some(ival), Ok(v)) = (o.int_value, i64::try_from(value)) {
            let obj = self.object(TPFLAGS_INT_SUBCLASS, 24);
            self.put(obj + ival, v as u64);
            return obj;
        }
        let mut digits = Vec::new();
        let mut rest = value.unsigned_abs();
        while rest != 0 {
            digits.push((rest & ((1 << LONG_SHIFT) - 1)) as u32);
            rest >>= LONG_SHIFT;
        }
        let obj = self.object(
            TPFLAGS_LONG_SUBCLASS,
            o.long_digits as usize + 4 * digits.len().max(1),
        );
        let n = digits.len() as u64;
        match (o.long_tag, o.long_size) {
            (Some(tag), _) => {
                let sign = if value == 0 {
                    1
                } else if value < 0 {
                    2
                } else {
                    0
                };
                self.put(obj + tag, (n << LONG_NON_SIZE_BITS) | sign);
            }
            (None, Some(size)) => {
                let signed = if value < 0 { -(n as i64) } else { n as i64 };
                self.put(obj + size, signed as u64);
            }
            _ => unreachable!(),
        }
        for (k, d) in digits.iter().enumerate() {
            let i = (obj + o.long_digits - self.base) as usize + 4 * k;
            self.bytes[i..i + 4].copy_from_slice(&d.to_ne_bytes());
        }
        obj
    }

    /// A keys table (3.x) holding `items` in order; `split` leaves values out of the
    /// entries (for shared keys). Returns the keys object.
    pub fn keys(&mut self, items: &[(Addr, Addr)], general: bool, split: bool) -> Addr {
        let o = self.o.clone();
        let size: u64 = 64;
        let indices = o.dict_keys_indices.unwrap();
        let (index_len, entry, key, value) = if o.dict_keys_log2_size.is_some() {
            if general {
                (
                    size,
                    o.dict_entry_size,
                    o.dict_entry_key,
                    o.dict_entry_value,
                )
            } else {
                (
                    size,
                    o.dict_unicode_entry_size.unwrap(),
                    UNICODE_ENTRY_KEY,
                    UNICODE_ENTRY_VALUE,
                )
            }
        } else {
            (
                size * index_bytes(size),
                o.dict_entry_size,
                o.dict_entry_key,
                o.dict_entry_value,
            )
        };
        let keys = self.alloc((indices + index_len + entry * size) as usize);
        if let (Some(l2), Some(l2i), Some(kind)) = (
            o.dict_keys_log2_size,
            o.dict_keys_log2_index_bytes,
            o.dict_keys_kind,
        ) {
            self.put_u8(keys + l2, 6);
            self.put_u8(keys + l2i, 6);
            self.put_u8(
                keys + kind,
                if general {
                    0
                } else if split {
                    2
                } else {
                    1
                },
            );
        } else {
            self.put(keys + o.dict_keys_size.unwrap(), size);
        }
        self.put(keys + o.dict_keys_nentries.unwrap(), items.len() as u64);
        let entries = keys + indices + index_len;
        for (i, &(k, v)) in items.iter().enumerate() {
            let e = entries + i as u64 * entry;
            self.put(e + key, k);
            if !split {
                self.put(e + value, v);
            }
        }
        keys
    }

    /// A values array (split table) for `values`, 3.13+ with its header.
    pub fn values_array(&mut self, values: &[Addr]) -> Addr {
        let o = self.o.clone();
        let head = o.dict_values_values.unwrap_or(0);
        let arr = self.alloc((head + 8 * values.len() as u64) as usize + 8);
        if let Some(cap) = o.dict_values_capacity {
            self.put_u8(arr + cap, values.len() as u8);
        }
        if let Some(valid) = o.dict_values_valid {
            self.put_u8(arr + valid, 1);
        }
        for (i, &v) in values.iter().enumerate() {
            self.put(arr + head + 8 * i as u64, v);
        }
        arr
    }

    /// A combined dict of `items`.
    pub fn dict(&mut self, items: &[(Addr, Addr)]) -> Addr {
        let o = self.o.clone();
        let dict = self.object(TPFLAGS_DICT_SUBCLASS, 64);
        if let (Some(mask), Some(table)) = (o.dict_mask, o.dict_table) {
            let slots = 32u64;
            let t = self.alloc((slots * o.dict_entry_size) as usize);
            self.put(dict + mask, slots - 1);
            self.put(dict + table, t);
            // Spread the entries over the table, as hashing would.
            for (i, &(k, v)) in items.iter().enumerate() {
                let e = t + ((i as u64 * 7) % slots) * o.dict_entry_size;
                self.put(e + o.dict_entry_key, k);
                self.put(e + o.dict_entry_value, v);
            }
            return dict;
        }
        let all_str = items.iter().all(|&(k, _)| {
            type_flags(&self.mem(), &o, k).is_ok_and(|f| f & TPFLAGS_UNICODE_SUBCLASS != 0)
        });
        let keys = self.keys(items, !(all_str && o.dict_keys_kind.is_some()), false);
        self.put(dict + o.dict_keys.unwrap(), keys);
        dict
    }

    pub fn mem(&self) -> LocalMemory {
        LocalMemory {
            base: self.base,
            bytes: self.bytes.clone(),
        }
    }
}

const ALL: &[(u8, u8)] = SUPPORTED_SERIES;

#[test]
fn digits_decode_to_64_bit_idents_and_beyond() {
    assert_eq!(decode_long_digits(&[], false), Some(0));
    assert_eq!(decode_long_digits(&[5], true), Some(-5));
    // A typical pthread_t: 0x7f12_3456_7000.
    let v: u64 = 0x7f12_3456_7000;
    let d = [(v & 0x3fff_ffff) as u32, (v >> 30) as u32];
    assert_eq!(decode_long_digits(&d, false), Some(i128::from(v)));
    let max = u64::MAX;
    let d = [
        (max & 0x3fff_ffff) as u32,
        ((max >> 30) & 0x3fff_ffff) as u32,
        (max >> 60) as u32,
    ];
    assert_eq!(decode_long_digits(&d, false), Some(i128::from(max)));
    // A digit with bits above the shift is corrupt, not a value.
    assert_eq!(decode_long_digits(&[1 << 30], false), None);
    let four = [0x3fff_ffff; 4];
    assert_eq!(decode_long_digits(&four, false), Some((1i128 << 120) - 1));
}

#[test]
fn big_ints_to_decimal() {
    assert_eq!(long_digits_to_decimal(&[], false).as_deref(), Some("0"));
    assert_eq!(long_digits_to_decimal(&[], true).as_deref(), Some("0"));
    assert_eq!(long_digits_to_decimal(&[42], true).as_deref(), Some("-42"));
    // 2**100 = 2**(30*3) * 2**10: digits [0, 0, 0, 1024].
    assert_eq!(
        long_digits_to_decimal(&[0, 0, 0, 1024], false).as_deref(),
        Some("1267650600228229401496703205376")
    );
    // 10**9 exactly crosses a limb boundary.
    let v: u64 = 1_000_000_000;
    let d = [(v & 0x3fff_ffff) as u32, (v >> 30) as u32];
    assert_eq!(
        long_digits_to_decimal(&d, false).as_deref(),
        Some("1000000000")
    );
    assert_eq!(long_digits_to_decimal(&[1 << 30], false), None);
    let max = [0x3fff_ffff; 4];
    assert_eq!(
        long_digits_to_decimal(&max, false),
        Some(((1i128 << 120) - 1).to_string())
    );
}

#[test]
fn big_ints_read_back_or_report_their_size() {
    for &series in ALL {
        let mut img = Image::new(series);
        let obj = img.int(-(1i128 << 70));
        let mem = img.mem();
        match read_big_int(&mem, &img.o, obj, 16).unwrap() {
            BigInt::Small(v) => panic!("{series:?}: small {v}"),
            BigInt::Digits { negative, digits } => {
                assert!(negative);
                assert_eq!(
                    long_digits_to_decimal(&digits, negative),
                    Some((-(1i128 << 70)).to_string())
                );
            }
            BigInt::TooBig { .. } => panic!("{series:?}: too big"),
        }
        assert_eq!(
            read_big_int(&mem, &img.o, obj, 1).unwrap(),
            BigInt::TooBig {
                negative: true,
                ndigits: 3
            }
        );
    }
}

#[test]
fn long_headers() {
    assert_eq!(long_tag_sign_and_size(1), Some((false, 0)));
    assert_eq!(long_tag_sign_and_size(2 << 3), Some((false, 2)));
    assert_eq!(long_tag_sign_and_size((1 << 3) | 2), Some((true, 1)));
    assert_eq!(long_tag_sign_and_size(3), None);
    assert_eq!(long_tag_sign_and_size((1 << 3) | 1), None);
    // Bit 2 (reserved for immortality) is neither sign nor size.
    assert_eq!(long_tag_sign_and_size((1 << 3) | 4), Some((false, 1)));
    assert_eq!(long_tag_sign_and_size(1 | 4), Some((false, 0)));
    assert_eq!(long_size_sign_and_size(2), (false, 2));
    assert_eq!(long_size_sign_and_size((-3i64) as u64), (true, 3));
}

#[test]
fn index_width_follows_table_size() {
    assert_eq!(index_bytes(8), 1);
    assert_eq!(index_bytes(0x100), 2);
    assert_eq!(index_bytes(0x1_0000), 4);
    assert_eq!(index_bytes(1 << 32), 8);
}

#[test]
fn entries_parse_with_any_layout() {
    let mut bytes = Vec::new();
    for (k, v) in [(1u64, 2u64), (3, 4)] {
        bytes.extend(9u64.to_ne_bytes());
        bytes.extend(k.to_ne_bytes());
        bytes.extend(v.to_ne_bytes());
    }
    assert_eq!(parse_entries(&bytes, 24, 8, 16), vec![(1, 2), (3, 4)]);
    assert_eq!(parse_entries(&bytes[..30], 24, 8, 16), vec![(1, 2)]);
    assert_eq!(parse_entries(&bytes, 16, 0, 8).len(), 3);
    assert!(parse_entries(&bytes, 0, 0, 8).is_empty());
    // Offsets past the entry read as null instead of panicking.
    assert_eq!(parse_entries(&bytes, 8, 4, 0)[0].0, 0);
}

#[test]
fn ints_read_back_in_every_version() {
    for &series in ALL {
        let mut img = Image::new(series);
        let values = [
            0i128,
            7,
            -7,
            0x7f12_3456_7000,
            u64::MAX as i128,
            -(1i128 << 70),
        ];
        let objs: Vec<Addr> = values.iter().map(|&v| img.int(v)).collect();
        let mem = img.mem();
        for (v, obj) in values.iter().zip(objs) {
            assert_eq!(read_int(&mem, &img.o, obj), Ok(*v), "{series:?}");
        }
        let s = {
            let mut img2 = Image::new(series);
            let s = img2.string("x");
            (img2.mem(), s)
        };
        assert!(matches!(
            read_int(&s.0, &img.o, s.1),
            Err(ObjectError::WrongType { .. })
        ));
    }
}

#[test]
fn too_many_digits_are_refused() {
    let mut img = Image::new((3, 11));
    let obj = img.int(5);
    img.put(obj + img.o.long_size.unwrap(), 1000);
    assert!(matches!(
        read_int(&img.mem(), &img.o, obj),
        Err(ObjectError::Memory(MemoryError::TooLong { .. }))
    ));
}

#[test]
fn combined_dicts_in_every_version() {
    for &series in ALL {
        let mut img = Image::new(series);
        let names = ["alpha", "threading", "名前", "_active"];
        let items: Vec<(Addr, Addr)> = names
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let k = img.string(n);
                (k, img.int(i as i128 + 100))
            })
            .collect();
        let dict = img.dict(&items);
        let int_keyed = {
            let k = img.int(0x7f00_0000_1000);
            let v = img.string("v");
            img.dict(&[(k, v)])
        };
        let mem = img.mem();
        let o = &img.o;
        let mut got = dict_items(&mem, o, dict).unwrap();
        got.sort_unstable();
        let mut want = items.clone();
        want.sort_unstable();
        assert_eq!(got, want, "{series:?}");
        let threading = dict_get_str(&mem, o, dict, "threading").unwrap();
        assert_eq!(threading, Some(items[1].1), "{series:?}");
        assert_eq!(
            dict_get_str(&mem, o, dict, "名前").unwrap(),
            Some(items[2].1)
        );
        assert_eq!(dict_get_str(&mem, o, dict, "missing").unwrap(), None);
        let pairs = dict_items(&mem, o, int_keyed).unwrap();
        assert_eq!(pairs.len(), 1, "{series:?}");
        assert_eq!(read_int(&mem, o, pairs[0].0), Ok(0x7f00_0000_1000));
        // Not a dict: refused by type.
        assert!(matches!(
            dict_items(&mem, o, items[0].0),
            Err(ObjectError::WrongType { .. })
        ));
    }
}

#[test]
fn corrupt_dicts_are_errors_not_panics() {
    for &series in ALL {
        let mut img = Image::new(series);
        let k = img.string("k");
        let dict = img.dict(&[(k, k)]);
        let o = img.o.clone();
        let (field, bad) = match (o.dict_mask, o.dict_keys) {
            (Some(mask), _) => (dict + mask, u64::MAX),
            (None, Some(keys)) => {
                let keys_obj = img.mem().read_u64(dict + keys).unwrap();
                (keys_obj + o.dict_keys_nentries.unwrap(), 1 << 40)
            }
            _ => unreachable!(),
        };
        img.put(field, bad);
        assert!(dict_items(&img.mem(), &o, dict).is_err(), "{series:?}");
        img.put(field, 3);
        let _ = dict_items(&img.mem(), &o, dict);
    }
}

/// A `threading.Thread`-like instance with `_name` and one other attribute, laid out as
/// each version does for a plain Python class.
fn instance(img: &mut Image, name: Addr, other: Addr, materialised: bool) -> Addr {
    let o = img.o.clone();
    let key_name = img.string("_name");
    let key_other = img.string("_ident");
    let items = [(key_other, other), (key_name, name)];
    match o.instance_dict {
        InstanceDictModel::DictOffset => {
            let dict = match o.dict_values {
                // 3.8–3.10 instance dicts are split tables: shared keys, own values.
                Some(values_at) if !materialised => {
                    let dict = img.object(TPFLAGS_DICT_SUBCLASS, 64);
                    let keys = img.keys(&items, true, true);
                    let values = img.values_array(&[other, name]);
                    img.put(dict + o.dict_keys.unwrap(), keys);
                    img.put(dict + values_at, values);
                    dict
                }
                _ => img.dict(&items),
            };
            let obj = img.object(0, 32);
            let tp = img.mem().read_u64(obj + o.object_type).unwrap();
            img.put(tp + o.type_dictoffset, 16);
            img.put(obj + 16, dict);
            obj
        }
        model => {
            let inline = model == InstanceDictModel::InlineValues;
            let flags = TPFLAGS_MANAGED_DICT | if inline { TPFLAGS_INLINE_VALUES } else { 0 };
            let obj = img.object(flags, 16 + 8 + 8 * 4);
            let tp = img.mem().read_u64(obj + o.object_type).unwrap();
            let before = o.managed_dict_before.unwrap();
            if materialised {
                let dict = img.dict(&items);
                img.put(obj - before, dict);
                return obj;
            }
            let keys = img.keys(&items, false, true);
            img.put(tp + o.heaptype_cached_keys.unwrap(), keys);
            match model {
                InstanceDictModel::PreHeader => {
                    let values = img.values_array(&[other, name]);
                    img.put(obj - o.managed_values_before.unwrap(), values);
                }
                InstanceDictModel::TaggedPreHeader => {
                    let values = img.values_array(&[other, name]);
                    img.put(obj - before, values - 1);
                }
                _ => {
                    // Inline at tp_basicsize (16): header bytes, then the values.
                    let head = o.dict_values_values.unwrap();
                    img.put_u8(obj + 16 + o.dict_values_capacity.unwrap(), 4);
                    img.put_u8(obj + 16 + o.dict_values_valid.unwrap(), 1);
                    img.put(obj + 16 + head, other);
                    img.put(obj + 16 + head + 8, name);
                }
            }
            obj
        }
    }
}

#[test]
fn instance_attributes_in_every_layout() {
    for &series in ALL {
        for materialised in [false, true] {
            let mut img = Image::new(series);
            let name = img.string("worker-1");
            let other = img.int(42);
            let obj = instance(&mut img, name, other, materialised);
            let mem = img.mem();
            let o = &img.o;
            let found = instance_attr(&mem, o, obj, &["_name", "_Thread__name"]).unwrap();
            assert_eq!(found, Some(name), "{series:?} materialised={materialised}");
            assert_eq!(read_py_string(&mem, o, name).unwrap(), "worker-1");
            assert_eq!(instance_items(&mem, o, obj).unwrap().len(), 2);
            assert_eq!(instance_attr(&mem, o, obj, &["nope"]).unwrap(), None);
        }
    }
}

#[test]
fn preferred_name_wins() {
    let mut img = Image::new((2, 7));
    let (a, b) = (img.string("_Thread__name"), img.string("_name"));
    let (va, vb) = (img.int(1), img.int(2));
    let items = [(a, va), (b, vb)];
    let mem = img.mem();
    assert_eq!(
        find_str_key(&mem, &img.o, &items, &["_name", "_Thread__name"]),
        Some(vb)
    );
    assert_eq!(
        find_str_key(&mem, &img.o, &items[..1], &["_name", "_Thread__name"]),
        Some(va)
    );
}

#[test]
fn inline_values_respect_capacity_and_validity() {
    let mut img = Image::new((3, 13));
    let name = img.string("n");
    let other = img.int(1);
    let obj = instance(&mut img, name, other, false);
    let o = img.o.clone();
    img.put_u8(obj + 16 + o.dict_values_capacity.unwrap(), 1);
    assert_eq!(instance_items(&img.mem(), &o, obj).unwrap().len(), 1);
    img.put_u8(obj + 16 + o.dict_values_valid.unwrap(), 0);
    assert!(instance_items(&img.mem(), &o, obj).unwrap().is_empty());
}

#[test]
fn garbage_never_panics() {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    for &series in ALL {
        let o = offsets_for(PyVersion::new(series.0, series.1, 0)).unwrap();
        for _ in 0..300 {
            let bytes: Vec<u8> = (0..4096)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    // Mostly small numbers and in-range pointers, some noise.
                    match state % 4 {
                        0 => (state >> 8) as u8,
                        _ => 0,
                    }
                })
                .collect();
            let mem = LocalMemory { base: 0, bytes };
            let at = state % 4096;
            let _ = dict_items(&mem, &o, at);
            let _ = read_int(&mem, &o, at);
            let _ = instance_items(&mem, &o, at);
            let _ = str_matches(&mem, &o, at, &["x"]);
        }
    }
}
