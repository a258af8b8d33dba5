use proptest::prelude::*;

use super::*;

/// A tiny BTF blob: struct outer { int a; union { long b; struct { int c; int d; }; }; }.
fn sample() -> Vec<u8> {
    let strings = b"\0int\0long\0outer\0a\0b\0c\0d\0";
    let name = |s: &str| {
        let needle = format!("\0{s}\0");
        u32::try_from(
            strings
                .windows(needle.len())
                .position(|w| w == needle.as_bytes())
                .unwrap()
                + 1,
        )
        .unwrap()
    };
    let mut types = Vec::new();
    let mut push = |words: &[u32]| {
        for word in words {
            types.extend_from_slice(&word.to_ne_bytes());
        }
    };
    push(&[name("int"), KIND_INT << 24, 4, 32]); // 1: int
    push(&[name("long"), KIND_INT << 24, 8, 64]); // 2: long
    push(&[
        0,
        (KIND_STRUCT << 24) | 2,
        8,
        name("c"),
        1,
        0,
        name("d"),
        1,
        32,
    ]); // 3: anon struct
    push(&[0, (KIND_UNION << 24) | 2, 8, name("b"), 2, 0, 0, 3, 0]); // 4: anon union
    push(&[
        name("outer"),
        (KIND_STRUCT << 24) | 2,
        16,
        name("a"),
        1,
        0,
        0,
        4,
        64,
    ]); // 5: outer
    let mut blob = Vec::new();
    blob.extend_from_slice(&MAGIC.to_ne_bytes());
    blob.extend_from_slice(&[1, 0]);
    for word in [
        24u32,
        0,
        u32::try_from(types.len()).unwrap(),
        u32::try_from(types.len()).unwrap(),
        u32::try_from(strings.len()).unwrap(),
    ] {
        blob.extend_from_slice(&word.to_ne_bytes());
    }
    blob.extend_from_slice(&types);
    blob.extend_from_slice(strings);
    blob
}

#[test]
fn finds_direct_and_anonymous_members() {
    let btf = Btf::parse(sample()).unwrap();
    assert_eq!(btf.member_offset("outer", "a").unwrap(), 0);
    assert_eq!(btf.member_offset("outer", "b").unwrap(), 8);
    assert_eq!(btf.member_offset("outer", "c").unwrap(), 8);
    assert_eq!(btf.member_offset("outer", "d").unwrap(), 12);
    assert!(matches!(
        btf.member_offset("outer", "e"),
        Err(BtfError::NoMember { .. })
    ));
    assert!(matches!(
        btf.member_offset("inner", "a"),
        Err(BtfError::NoStruct(_))
    ));
}

#[test]
fn the_running_kernel_has_what_the_exec_sensor_reads() {
    let btf = Btf::load(Path::new(VMLINUX)).expect("this kernel publishes BTF");
    for (strukt, member) in [
        ("task_struct", "mm"),
        ("task_struct", "real_parent"),
        ("task_struct", "tgid"),
        ("task_struct", "signal"),
        ("signal_struct", "tty"),
        ("mm_struct", "arg_start"),
        ("mm_struct", "arg_end"),
        ("linux_binprm", "filename"),
    ] {
        let offset = btf
            .member_offset(strukt, member)
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(offset < 16 * 1024, "{strukt}.{member} at {offset}");
    }
    // arg_end follows arg_start (both unsigned long) in every kernel since 2.6.
    let start = btf.member_offset("mm_struct", "arg_start").unwrap();
    assert_eq!(
        btf.member_offset("mm_struct", "arg_end").unwrap(),
        start + 8
    );
}

#[test]
fn garbage_is_an_error_not_a_panic() {
    for bad in [
        Vec::new(),
        vec![0x9f, 0xeb],
        vec![0; 64],
        sample()[..30].to_vec(),
    ] {
        assert!(Btf::parse(bad).is_err());
    }
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(mut bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        if bytes.len() >= 2 {
            bytes[..2].copy_from_slice(&MAGIC.to_ne_bytes());
        }
        if let Ok(btf) = Btf::parse(bytes) {
            let _ = btf.member_offset("task_struct", "mm");
        }
    }

    #[test]
    fn corrupting_the_sample_never_panics(at in 0usize..120, value in any::<u8>()) {
        let mut bytes = sample();
        if at < bytes.len() {
            bytes[at] = value;
        }
        if let Ok(btf) = Btf::parse(bytes) {
            let _ = btf.member_offset("outer", "d");
        }
    }
}
