//! The embedded eBPF object, and one way to load programs from it that keeps the
//! verifier's output in the error (instead of `program_mut(..).unwrap()` scattered about).

use aya::{
    Ebpf, EbpfLoader,
    maps::{Map, MapError},
    programs::{CgroupSockAddr, ProgramError},
};

/// Built by build.rs from the `nodeward-ebpf` crate.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/nodeward"));

#[derive(Debug, thiserror::Error)]
pub enum BpfError {
    #[error(
        "cannot load nodeward's eBPF object (is this kernel ≥ 6.1 with BTF, and does the agent have CAP_BPF?)"
    )]
    Object(#[source] aya::EbpfError),
    #[error("the eBPF object has no program `{0}`")]
    MissingProgram(&'static str),
    #[error("program `{name}` has an unexpected type")]
    WrongType {
        name: &'static str,
        #[source]
        source: ProgramError,
    },
    /// The source's message carries the verifier log.
    #[error("the kernel refused program `{name}`")]
    Load {
        name: &'static str,
        #[source]
        source: ProgramError,
    },
    #[error("the eBPF object has no map `{0}`")]
    MissingMap(&'static str),
    #[error("map `{name}`")]
    Map {
        name: &'static str,
        #[source]
        source: MapError,
    },
}

/// Parses the object and creates its maps (programs are loaded one by one on demand).
pub fn load_object() -> Result<Ebpf, BpfError> {
    EbpfLoader::new().load(OBJECT).map_err(BpfError::Object)
}

/// Finds a cgroup `sock_addr` program and loads it into the kernel.
pub fn load_cgroup_sock_addr<'a>(
    ebpf: &'a mut Ebpf,
    name: &'static str,
) -> Result<&'a mut CgroupSockAddr, BpfError> {
    let program: &mut CgroupSockAddr = ebpf
        .program_mut(name)
        .ok_or(BpfError::MissingProgram(name))?
        .try_into()
        .map_err(|source| BpfError::WrongType { name, source })?;
    program
        .load()
        .map_err(|source| BpfError::Load { name, source })?;
    Ok(program)
}

/// Borrows a map by name.
pub fn map_mut<'a>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut Map, BpfError> {
    ebpf.map_mut(name).ok_or(BpfError::MissingMap(name))
}

/// Takes ownership of a map by name (ring buffers move into their reader task).
pub fn take_map(ebpf: &mut Ebpf, name: &'static str) -> Result<Map, BpfError> {
    ebpf.take_map(name).ok_or(BpfError::MissingMap(name))
}

/// Wraps a map error with the map's name.
pub fn map_err(name: &'static str) -> impl FnOnce(MapError) -> BpfError {
    move |source| BpfError::Map { name, source }
}
