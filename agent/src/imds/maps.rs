//! Typed access to the IMDS maps the agent writes. Updates are made so that enforcement
//! never loosens in between: new entries go in before stale ones come out.

use std::collections::BTreeSet;

use aya::{
    Ebpf, Pod,
    maps::{Array, HashMap, LpmTrie, MapData, lpm_trie::Key},
};
use ipnet::IpNet;
use nodeward_common::imds::{
    self as shared, ImdsConfig as KernelConfig, MODE_AUDIT, MODE_ENFORCE, MODE_OFF, Prefilter,
};

use crate::{
    bpf::{self, BpfError},
    config::ImdsMode,
};

/// The maps the agent writes, taken out of the object so one task owns them.
pub struct ImdsMaps {
    blocked_v4: LpmTrie<MapData, [u8; 4], u32>,
    blocked_v6: LpmTrie<MapData, [u8; 16], u32>,
    config: Array<MapData, KernelConfig>,
    prefilter: Array<MapData, Prefilter>,
    allowed: HashMap<MapData, u64, u32>,
}

impl ImdsMaps {
    pub fn take(ebpf: &mut Ebpf) -> Result<Self, BpfError> {
        Ok(Self {
            blocked_v4: bpf::take_map(ebpf, shared::MAP_BLOCKED_V4)?,
            blocked_v6: bpf::take_map(ebpf, shared::MAP_BLOCKED_V6)?,
            config: bpf::take_map(ebpf, shared::MAP_CONFIG)?,
            prefilter: bpf::take_map(ebpf, shared::MAP_PREFILTER)?,
            allowed: bpf::take_map(ebpf, shared::MAP_ALLOWED)?,
        })
    }

    /// Makes the blocked tries hold exactly `cidrs`, and the prefilter describe them. While
    /// the tries change, the prefilter covers both the old and the new prefixes.
    pub fn set_blocked(&mut self, cidrs: &[IpNet]) -> Result<(), BpfError> {
        let err = || bpf::map_err(shared::MAP_PREFILTER);
        let wanted = prefilter(cidrs);
        let old = self.prefilter.get(&0, 0).map_err(err())?;
        if old.valid != 0 {
            let mut both = old;
            for (word, new) in both.v4.iter_mut().zip(wanted.v4) {
                *word |= new;
            }
            for (word, new) in both.v6.iter_mut().zip(wanted.v6) {
                *word |= new;
            }
            self.prefilter.set(0, both, 0).map_err(err())?;
        }
        self.set_tries(cidrs)?;
        self.prefilter.set(0, wanted, 0).map_err(err())
    }

    fn set_tries(&mut self, cidrs: &[IpNet]) -> Result<(), BpfError> {
        let mut v4 = BTreeSet::new();
        let mut v6 = BTreeSet::new();
        for net in cidrs {
            match net.trunc() {
                IpNet::V4(n) => v4.insert((u32::from(n.prefix_len()), n.network().octets())),
                IpNet::V6(n) => v6.insert((u32::from(n.prefix_len()), n.network().octets())),
            };
        }
        sync_trie(&mut self.blocked_v4, &v4, shared::MAP_BLOCKED_V4)?;
        sync_trie(&mut self.blocked_v6, &v6, shared::MAP_BLOCKED_V6)
    }

    pub fn set_mode(&mut self, mode: ImdsMode) -> Result<(), BpfError> {
        let mode = match mode {
            ImdsMode::Enforce => MODE_ENFORCE,
            ImdsMode::Audit => MODE_AUDIT,
            ImdsMode::Off => MODE_OFF,
        };
        self.config
            .set(0, KernelConfig { mode, reserved: 0 }, 0)
            .map_err(bpf::map_err(shared::MAP_CONFIG))
    }

    /// Makes the allowlist hold exactly these pod cgroup ids.
    pub fn set_allowed(&mut self, ids: &BTreeSet<u64>) -> Result<(), BpfError> {
        let err = bpf::map_err(shared::MAP_ALLOWED);
        let present: BTreeSet<u64> = self.allowed.keys().collect::<Result<_, _>>().map_err(err)?;
        for id in ids.difference(&present) {
            self.allowed
                .insert(id, 1, 0)
                .map_err(bpf::map_err(shared::MAP_ALLOWED))?;
        }
        for id in present.difference(ids) {
            self.allowed
                .remove(id)
                .map_err(bpf::map_err(shared::MAP_ALLOWED))?;
        }
        Ok(())
    }
}

/// The first bytes `cidrs` cover.
fn prefilter(cidrs: &[IpNet]) -> Prefilter {
    let mut filter = Prefilter {
        valid: 1,
        ..Prefilter::default()
    };
    for net in cidrs {
        match net.trunc() {
            IpNet::V4(n) => {
                Prefilter::mark(&mut filter.v4, n.network().octets()[0], n.prefix_len());
            }
            IpNet::V6(n) => {
                Prefilter::mark(&mut filter.v6, n.network().octets()[0], n.prefix_len());
            }
        }
    }
    filter
}

/// Inserts the wanted prefixes, then removes the others.
fn sync_trie<const N: usize>(
    trie: &mut LpmTrie<MapData, [u8; N], u32>,
    wanted: &BTreeSet<(u32, [u8; N])>,
    name: &'static str,
) -> Result<(), BpfError>
where
    [u8; N]: Pod + Ord,
{
    for (len, addr) in wanted {
        trie.insert(&Key::new(*len, *addr), 1, 0)
            .map_err(bpf::map_err(name))?;
    }
    let present: Vec<Key<[u8; N]>> = trie
        .keys()
        .collect::<Result<_, _>>()
        .map_err(bpf::map_err(name))?;
    for key in present {
        if !wanted.contains(&(key.prefix_len(), key.data())) {
            trie.remove(&key).map_err(bpf::map_err(name))?;
        }
    }
    Ok(())
}
