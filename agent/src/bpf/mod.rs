//! The embedded eBPF object, and one way to load programs from it that keeps the
//! verifier's output in the error (instead of `program_mut(..).unwrap()` scattered about).

pub mod losses;
mod pins;
pub mod ring;
mod sys;

use aya::{
    Ebpf, EbpfLoader,
    maps::{Map, MapError},
    programs::{CgroupSkb, CgroupSock, CgroupSockAddr, Program, ProgramError, SchedClassifier},
};

pub use self::pins::{
    Attached, InterfaceLinks, Pins, attach_pinned, cgroup_link, remove_all, sync_interface_links,
    tcx_egress_link, unpin_link,
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

/// Parses the object and creates its maps, adopting any already pinned under `pins`
/// (programs are loaded one by one on demand).
pub fn load_object(pins: &Pins) -> Result<Ebpf, BpfError> {
    EbpfLoader::new()
        .default_map_pin_directory(pins.maps())
        .load(OBJECT)
        .map_err(BpfError::Object)
}

/// A program type this module knows how to load.
pub trait Loadable: Sized {
    fn load_program(&mut self) -> Result<(), ProgramError>;
    fn from_program(program: &mut Program) -> Result<&mut Self, ProgramError>;
}

impl Loadable for CgroupSockAddr {
    fn load_program(&mut self) -> Result<(), ProgramError> {
        self.load()
    }
    fn from_program(program: &mut Program) -> Result<&mut Self, ProgramError> {
        program.try_into()
    }
}

impl Loadable for CgroupSkb {
    fn load_program(&mut self) -> Result<(), ProgramError> {
        self.load()
    }
    fn from_program(program: &mut Program) -> Result<&mut Self, ProgramError> {
        program.try_into()
    }
}

impl Loadable for CgroupSock {
    fn load_program(&mut self) -> Result<(), ProgramError> {
        self.load()
    }
    fn from_program(program: &mut Program) -> Result<&mut Self, ProgramError> {
        program.try_into()
    }
}

impl Loadable for SchedClassifier {
    fn load_program(&mut self) -> Result<(), ProgramError> {
        self.load()
    }
    fn from_program(program: &mut Program) -> Result<&mut Self, ProgramError> {
        program.try_into()
    }
}

/// Finds a program of type `P` by name and loads it into the kernel.
pub fn load_program<'a, P: Loadable>(
    ebpf: &'a mut Ebpf,
    name: &'static str,
) -> Result<&'a mut P, BpfError> {
    let program = ebpf
        .program_mut(name)
        .ok_or(BpfError::MissingProgram(name))?;
    let program =
        P::from_program(program).map_err(|source| BpfError::WrongType { name, source })?;
    program
        .load_program()
        .map_err(|source| BpfError::Load { name, source })?;
    Ok(program)
}

/// Takes ownership of a map by name (ring buffers move into their reader task).
pub fn take_map<T>(ebpf: &mut Ebpf, name: &'static str) -> Result<T, BpfError>
where
    T: TryFrom<Map, Error = MapError>,
{
    let map = ebpf.take_map(name).ok_or(BpfError::MissingMap(name))?;
    T::try_from(map).map_err(map_err(name))
}

/// Wraps a map error with the map's name.
pub fn map_err(name: &'static str) -> impl FnOnce(MapError) -> BpfError {
    move |source| BpfError::Map { name, source }
}
