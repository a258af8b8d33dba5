//! Parsers never panic, whatever they are fed, and accept what they should.

use nodeward_posture::config::{
    DocumentKind, Flags, parse_bool, parse_bytes, parse_duration, parse_int32, shell,
};
use proptest::prelude::*;

proptest! {
    #[test]
    fn config_parser_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        for kind in [DocumentKind::Kubelet, DocumentKind::KubeProxy] {
            if let Ok(doc) = parse_bytes(&bytes, kind) {
                prop_assert!(doc.is_object());
            }
        }
    }

    #[test]
    fn yaml_like_text_never_panics(text in "[a-zA-Z:{}\\[\\], \"'\n-]{0,200}") {
        let _ = parse_bytes(text.as_bytes(), DocumentKind::Kubelet);
    }

    #[test]
    fn scalars_never_panic(text in "\\PC{0,24}") {
        let _ = parse_bool(&text);
        let _ = parse_int32(&text);
        let _ = parse_duration(&text);
    }

    #[test]
    fn read_only_port_round_trips(port in 0_i64..65536) {
        let doc = format!("apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nreadOnlyPort: {port}\n");
        let parsed = parse_bytes(doc.as_bytes(), DocumentKind::Kubelet).expect("valid config");
        prop_assert_eq!(parsed["readOnlyPort"].as_i64(), Some(port));
    }

    #[test]
    fn shell_split_then_flags_never_panics(line in "\\PC{0,120}") {
        if let Ok(words) = shell::split(&line) {
            let mut args = vec!["kubelet".to_owned()];
            args.extend(words);
            let _ = Flags::parse(&args);
        }
    }

    #[test]
    fn quoted_words_survive_splitting(words in proptest::collection::vec("[a-zA-Z0-9=/ ._-]{0,12}", 0..6)) {
        let line = words.iter().map(|w| format!("'{w}'")).collect::<Vec<_>>().join(" ");
        prop_assert_eq!(shell::split(&line).expect("splits"), words);
    }
}

#[test]
fn deep_nesting_is_refused_or_parsed_not_crashed() {
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    assert!(parse_bytes(deep.as_bytes(), DocumentKind::Kubelet).is_err());
    let deep_yaml = format!(
        "apiVersion: x\nkind: KubeletConfiguration\na: {}1{}",
        "[".repeat(50_000),
        "]".repeat(50_000)
    );
    assert!(parse_bytes(deep_yaml.as_bytes(), DocumentKind::Kubelet).is_err());
}
