//! Struct member offsets from the running kernel's BTF (/sys/kernel/btf/vmlinux).
//!
//! The exec sensor reads a few fields of kernel structs (`task_struct`, `mm_struct`,
//! `linux_binprm`, `signal_struct`) whose offsets differ between kernel builds. aya-ebpf
//! has no CO-RE relocations, so the agent looks the offsets up here at load time and hands
//! them to the program; none is compiled in. Only what that needs is parsed: the type
//! section and string table, struct/union members (descending into anonymous ones, which
//! is where `mm_struct` keeps `arg_start`), and the modifiers in between.

use std::path::Path;

/// Where the running kernel publishes its BTF.
pub const VMLINUX: &str = "/sys/kernel/btf/vmlinux";

const MAGIC: u16 = 0xeb9f;
const HEADER_LEN: usize = 24;
// BTF_KIND_* from include/uapi/linux/btf.h.
const KIND_INT: u32 = 1;
const KIND_ARRAY: u32 = 3;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_ENUM: u32 = 6;
const KIND_TYPEDEF: u32 = 8;
const KIND_VOLATILE: u32 = 9;
const KIND_CONST: u32 = 10;
const KIND_RESTRICT: u32 = 11;
const KIND_FUNC_PROTO: u32 = 13;
const KIND_VAR: u32 = 14;
const KIND_DATASEC: u32 = 15;
const KIND_DECL_TAG: u32 = 17;
const KIND_TYPE_TAG: u32 = 18;
const KIND_ENUM64: u32 = 19;
/// Members nested deeper than this are not looked for (the kernel nests two or three).
const MAX_NESTING: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum BtfError {
    #[error(
        "cannot read kernel BTF from {path} (nodeward needs a kernel built with CONFIG_DEBUG_INFO_BTF)"
    )]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("kernel BTF is malformed: {0}")]
    Malformed(&'static str),
    #[error("kernel BTF has no struct {0}")]
    NoStruct(String),
    #[error("kernel struct {strukt} has no member {member}")]
    NoMember { strukt: String, member: String },
}

/// One type record: its kind, name, size-or-type field, and where its trailing data is.
#[derive(Debug, Clone, Copy)]
struct Type {
    kind: u32,
    name_off: u32,
    vlen: usize,
    kind_flag: bool,
    size_or_id: u32,
    data: usize,
}

/// The parsed type section of a BTF blob.
pub struct Btf {
    bytes: Vec<u8>,
    strings: usize,
    strings_len: usize,
    /// Index 0 is the implicit `void`.
    types: Vec<Option<Type>>,
}

impl Btf {
    /// Reads and indexes the BTF at `path`.
    pub fn load(path: &Path) -> Result<Self, BtfError> {
        let bytes = std::fs::read(path).map_err(|source| BtfError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(bytes)
    }

    /// Indexes a BTF blob (native endianness, as the kernel publishes it).
    pub fn parse(bytes: Vec<u8>) -> Result<Self, BtfError> {
        let u16_at = |at: usize| {
            bytes
                .get(at..at + 2)
                .map(|b| u16::from_ne_bytes([b[0], b[1]]))
        };
        if u16_at(0) != Some(MAGIC) {
            return Err(BtfError::Malformed("bad magic"));
        }
        let hdr_len = read_u32(&bytes, 4).ok_or(BtfError::Malformed("short header"))? as usize;
        let field = |n: usize| {
            read_u32(&bytes, 8 + 4 * n)
                .map(|v| v as usize)
                .ok_or(BtfError::Malformed("short header"))
        };
        let (type_off, type_len, str_off, str_len) = (field(0)?, field(1)?, field(2)?, field(3)?);
        if hdr_len < HEADER_LEN {
            return Err(BtfError::Malformed("header too short"));
        }
        let types_start = hdr_len
            .checked_add(type_off)
            .ok_or(BtfError::Malformed("type offset"))?;
        let types_end = types_start
            .checked_add(type_len)
            .ok_or(BtfError::Malformed("type length"))?;
        let strings = hdr_len
            .checked_add(str_off)
            .ok_or(BtfError::Malformed("string offset"))?;
        if types_end > bytes.len()
            || strings
                .checked_add(str_len)
                .is_none_or(|end| end > bytes.len())
        {
            return Err(BtfError::Malformed("sections past the end"));
        }
        let mut types = vec![None];
        let mut at = types_start;
        while at < types_end {
            let (ty, next) = read_type(&bytes, at, types_end)?;
            types.push(Some(ty));
            at = next;
        }
        Ok(Self {
            bytes,
            strings,
            strings_len: str_len,
            types,
        })
    }

    /// Byte offset of `member` in `struct strukt`, looking through anonymous members.
    pub fn member_offset(&self, strukt: &str, member: &str) -> Result<u32, BtfError> {
        let id = self
            .types
            .iter()
            .position(|t| {
                t.is_some_and(|t| t.kind == KIND_STRUCT && self.name(t.name_off) == Some(strukt))
            })
            .ok_or_else(|| BtfError::NoStruct(strukt.to_owned()))?;
        self.find_member(id, member, 0)
            .ok_or_else(|| BtfError::NoMember {
                strukt: strukt.to_owned(),
                member: member.to_owned(),
            })
    }

    /// Offset in bytes of `name` inside composite type `id`, recursing into anonymous
    /// struct and union members.
    fn find_member(&self, id: usize, name: &str, depth: usize) -> Option<u32> {
        let ty = self.types.get(id).copied().flatten()?;
        if depth > MAX_NESTING || !(ty.kind == KIND_STRUCT || ty.kind == KIND_UNION) {
            return None;
        }
        for i in 0..ty.vlen {
            let at = ty.data + 12 * i;
            let (name_off, member_type, raw_offset) = (
                read_u32(&self.bytes, at)?,
                read_u32(&self.bytes, at + 4)?,
                read_u32(&self.bytes, at + 8)?,
            );
            // With kind_flag the low 24 bits are the bit offset and the rest a bitfield size.
            let bits = if ty.kind_flag {
                raw_offset & 0x00ff_ffff
            } else {
                raw_offset
            };
            match self.name(name_off) {
                Some(n) if n == name => return (bits % 8 == 0).then_some(bits / 8),
                Some("") | None => {
                    let inner = self.resolve(member_type as usize)?;
                    if let Some(offset) = self.find_member(inner, name, depth + 1) {
                        return Some(bits / 8 + offset);
                    }
                }
                Some(_) => {}
            }
        }
        None
    }

    /// Follows typedefs and qualifiers to the underlying type id.
    fn resolve(&self, mut id: usize) -> Option<usize> {
        for _ in 0..MAX_NESTING {
            let ty = self.types.get(id).copied().flatten()?;
            match ty.kind {
                KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG => {
                    id = ty.size_or_id as usize;
                }
                _ => return Some(id),
            }
        }
        None
    }

    fn name(&self, offset: u32) -> Option<&str> {
        let start = self.strings.checked_add(offset as usize)?;
        let end = self.strings + self.strings_len;
        let bytes = self.bytes.get(start..end)?;
        let len = bytes.iter().position(|&b| b == 0)?;
        std::str::from_utf8(&bytes[..len]).ok()
    }
}

fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    bytes
        .get(at..at.checked_add(4)?)
        .map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
}

/// Reads the type record at `at`; returns it and where the next one starts.
fn read_type(bytes: &[u8], at: usize, end: usize) -> Result<(Type, usize), BtfError> {
    let short = BtfError::Malformed("truncated type");
    let (name_off, info, size_or_id) = (
        read_u32(bytes, at).ok_or(BtfError::Malformed("truncated type"))?,
        read_u32(bytes, at + 4).ok_or(BtfError::Malformed("truncated type"))?,
        read_u32(bytes, at + 8).ok_or(short)?,
    );
    let kind = (info >> 24) & 0x1f;
    let vlen = (info & 0xffff) as usize;
    let data = at + 12;
    let extra = match kind {
        KIND_INT | KIND_VAR | KIND_DECL_TAG => 4,
        KIND_ARRAY => 12,
        KIND_STRUCT | KIND_UNION | KIND_DATASEC | KIND_ENUM64 => 12 * vlen,
        KIND_ENUM | KIND_FUNC_PROTO => 8 * vlen,
        0..=19 => 0,
        _ => return Err(BtfError::Malformed("unknown type kind")),
    };
    let next = data
        .checked_add(extra)
        .filter(|&n| n <= end)
        .ok_or(BtfError::Malformed("type past the end"))?;
    Ok((
        Type {
            kind,
            name_off,
            vlen,
            kind_flag: info & (1 << 31) != 0,
            size_or_id,
            data,
        },
        next,
    ))
}

#[cfg(test)]
mod tests;
