//! pcapng, written by hand: a Section Header Block, one Interface Description Block per capture point
//! (with its `if_name` and nanosecond `if_tsresol`), and an Enhanced Packet Block per frame. Little-endian,
//! as the byte-order magic says. Opens in Wireshark and tshark (`-e frame.interface_name`).

use std::io::{self, Write};

/// LINKTYPE_ETHERNET.
pub const LINKTYPE_ETHERNET: u16 = 1;
/// LINKTYPE_RAW (raw IP), for ARPHRD_NONE devices (wireguard, tun).
pub const LINKTYPE_RAW: u16 = 101;

/// The link type for an ARPHRD_* value.
pub fn linktype_for(hatype: u16) -> u16 {
    match hatype {
        1 => LINKTYPE_ETHERNET,
        _ => LINKTYPE_RAW,
    }
}

pub struct InterfaceDesc<'a> {
    pub name: &'a str,
    /// Free text: where this capture point is (`container netns`, `host netns`).
    pub description: &'a str,
    pub linktype: u16,
    pub snaplen: u32,
}

pub struct Frame<'a> {
    /// Index of the interface in the order given to [`write`].
    pub interface: u32,
    pub ts_ns: u64,
    pub data: &'a [u8],
    pub orig_len: u32,
    /// Set the EPB flags' direction bits: true outbound, false inbound.
    pub outbound: Option<bool>,
}

fn pad4(n: usize) -> usize {
    (n + 3) & !3
}

fn option(buf: &mut Vec<u8>, code: u16, value: &[u8]) {
    buf.extend_from_slice(&code.to_le_bytes());
    buf.extend_from_slice(&(value.len() as u16).to_le_bytes());
    buf.extend_from_slice(value);
    buf.resize(buf.len() + pad4(value.len()) - value.len(), 0);
}

fn block(out: &mut impl Write, ty: u32, body: &[u8]) -> io::Result<()> {
    let total = (12 + body.len()) as u32;
    out.write_all(&ty.to_le_bytes())?;
    out.write_all(&total.to_le_bytes())?;
    out.write_all(body)?;
    out.write_all(&total.to_le_bytes())
}

/// Writes a whole pcapng file: one section, the interfaces, the frames (in the order given).
pub fn write(out: &mut impl Write, app: &str, interfaces: &[InterfaceDesc], frames: &[Frame]) -> io::Result<()> {
    // Section Header Block.
    let mut shb = Vec::new();
    shb.extend_from_slice(&0x1A2B_3C4Du32.to_le_bytes());
    shb.extend_from_slice(&1u16.to_le_bytes());
    shb.extend_from_slice(&0u16.to_le_bytes());
    shb.extend_from_slice(&(-1i64).to_le_bytes()); // section length unknown
    option(&mut shb, 4, app.as_bytes()); // shb_userappl
    option(&mut shb, 0, &[]);
    block(out, 0x0A0D_0D0A, &shb)?;
    // Interface Description Blocks.
    for i in interfaces {
        let mut idb = Vec::new();
        idb.extend_from_slice(&i.linktype.to_le_bytes());
        idb.extend_from_slice(&0u16.to_le_bytes());
        idb.extend_from_slice(&i.snaplen.to_le_bytes());
        option(&mut idb, 2, i.name.as_bytes()); // if_name
        if !i.description.is_empty() {
            option(&mut idb, 3, i.description.as_bytes()); // if_description
        }
        option(&mut idb, 9, &[9]); // if_tsresol: 10^-9 s
        option(&mut idb, 0, &[]);
        block(out, 1, &idb)?;
    }
    // Enhanced Packet Blocks.
    for f in frames {
        let mut epb = Vec::with_capacity(32 + pad4(f.data.len()));
        epb.extend_from_slice(&f.interface.to_le_bytes());
        epb.extend_from_slice(&((f.ts_ns >> 32) as u32).to_le_bytes());
        epb.extend_from_slice(&(f.ts_ns as u32).to_le_bytes());
        epb.extend_from_slice(&(f.data.len() as u32).to_le_bytes());
        epb.extend_from_slice(&f.orig_len.max(f.data.len() as u32).to_le_bytes());
        epb.extend_from_slice(f.data);
        epb.resize(epb.len() + pad4(f.data.len()) - f.data.len(), 0);
        if let Some(outbound) = f.outbound {
            let flags: u32 = if outbound { 2 } else { 1 }; // epb_flags: direction bits 0-1
            option(&mut epb, 2, &flags.to_le_bytes());
            option(&mut epb, 0, &[]);
        }
        block(out, 6, &epb)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_are_well_formed() {
        let mut buf = Vec::new();
        let ifs = [
            InterfaceDesc { name: "eth0", description: "container", linktype: 1, snaplen: 65535 },
            InterfaceDesc { name: "veth1", description: "host", linktype: 1, snaplen: 65535 },
        ];
        let data = [0xffu8; 61];
        let frames = [
            Frame { interface: 0, ts_ns: 1_700_000_000_123_456_789, data: &data, orig_len: 61, outbound: Some(true) },
            Frame { interface: 1, ts_ns: 1_700_000_000_123_556_789, data: &data[..60], orig_len: 60, outbound: None },
        ];
        write(&mut buf, "hostreach test", &ifs, &frames).unwrap();
        // Walk the blocks: each starts with type and length, ends with the same length, 4-aligned.
        let mut off = 0;
        let mut types = Vec::new();
        while off < buf.len() {
            let ty = u32::from_le_bytes(buf[off..off + 4].try_into().unwrap());
            let len = u32::from_le_bytes(buf[off + 4..off + 8].try_into().unwrap()) as usize;
            assert_eq!(len % 4, 0);
            let end = u32::from_le_bytes(buf[off + len - 4..off + len].try_into().unwrap()) as usize;
            assert_eq!(len, end);
            types.push(ty);
            off += len;
        }
        assert_eq!(off, buf.len());
        assert_eq!(types, vec![0x0A0D0D0A, 1, 1, 6, 6]);
        assert!(buf.windows(4).any(|w| w == b"eth0"));
        assert!(buf.windows(5).any(|w| w == b"veth1"));
    }
}
