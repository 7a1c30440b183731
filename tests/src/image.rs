//! Writes OCI image layouts for clients to push: no network, no base images. Each layer is a
//! real gzip tar (stored blocks, so large layers are quick to make) of pseudo-random bytes from
//! a seed, so images are deterministic, incompressible and valid for podman and docker to
//! unpack.

use std::fs;
use std::path::Path;

use serde_json::json;
use sha2::Digest as _;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// Deterministic pseudo-random bytes (xorshift64*), fast enough for hundreds of MB.
pub struct Noise(u64);

impl Noise {
    pub fn new(seed: u64) -> Noise {
        Noise(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            let v = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

fn sha(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}

fn put_blob(dir: &Path, bytes: &[u8]) -> String {
    let d = sha(bytes);
    let p = dir.join("blobs/sha256").join(&d[7..]);
    fs::write(p, bytes).expect("write blob");
    d
}

/// What was written: the digest the tag points at and every manifest digest.
#[derive(Debug, Clone)]
pub struct Written {
    pub top: String,
    pub manifests: Vec<String>,
    pub layers: Vec<String>,
}

/// Writes an image to an OCI layout at `dir` under `tag`: one manifest per platform, wrapped in
/// an index when there is more than one. `layer_sizes` are the uncompressed payload sizes.
pub fn write_layout(
    dir: &Path,
    tag: &str,
    platforms: &[(&str, &str)],
    layer_sizes: &[usize],
    seed: u64,
) -> Written {
    fs::create_dir_all(dir.join("blobs/sha256")).expect("layout dir");
    fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).expect("oci-layout");
    let mut manifests = Vec::new();
    let mut descriptors = Vec::new();
    let mut all_layers = Vec::new();
    for (p, (os, arch)) in platforms.iter().enumerate() {
        let mut layers = Vec::new();
        let mut diff_ids = Vec::new();
        for (i, size) in layer_sizes.iter().enumerate() {
            let mut payload = vec![0u8; *size];
            Noise::new(seed * 1000 + (p * 100 + i) as u64).fill(&mut payload);
            let mut tar = tar::Builder::new(Vec::new());
            let mut header = tar::Header::new_gnu();
            header.set_size(payload.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            tar.append_data(&mut header, format!("data-{p}-{i}.bin"), payload.as_slice())
                .expect("tar");
            let tar = tar.into_inner().expect("tar");
            diff_ids.push(sha(&tar));
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::none());
            std::io::Write::write_all(&mut gz, &tar).expect("gzip");
            let gz = gz.finish().expect("gzip");
            let d = put_blob(dir, &gz);
            all_layers.push(d.clone());
            layers.push(json!({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": d, "size": gz.len()}));
        }
        let config = serde_json::to_vec(&json!({
            "architecture": arch, "os": os, "created": "2026-01-01T00:00:00Z",
            "config": {"Env": ["SEED=".to_owned() + &seed.to_string()]},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        }))
        .expect("config");
        let config_digest = put_blob(dir, &config);
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
            "layers": layers,
        }))
        .expect("manifest");
        let md = put_blob(dir, &manifest);
        manifests.push(md.clone());
        descriptors.push(
            json!({"mediaType": OCI_MANIFEST, "digest": md, "size": manifest.len(),
            "platform": {"os": os, "architecture": arch}}),
        );
    }
    let (top, top_desc) = if descriptors.len() == 1 {
        let mut d = descriptors.remove(0);
        d.as_object_mut().expect("object").remove("platform");
        (manifests[0].clone(), d)
    } else {
        let index = serde_json::to_vec(
            &json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": descriptors}),
        )
        .expect("index");
        let d = put_blob(dir, &index);
        (
            d.clone(),
            json!({"mediaType": OCI_INDEX, "digest": d, "size": index.len()}),
        )
    };
    let mut top_desc = top_desc;
    top_desc["annotations"] = json!({"org.opencontainers.image.ref.name": tag});
    let layout_index = json!({"schemaVersion": 2, "manifests": [top_desc]});
    fs::write(dir.join("index.json"), layout_index.to_string()).expect("index.json");
    Written {
        top,
        manifests,
        layers: all_layers,
    }
}

/// A large deterministic byte stream addressable by position: block `i` of 1 MiB is
/// `Noise::new(i)`, so any suffix can be regenerated to resume an upload.
pub struct Pattern;

impl Pattern {
    pub const BLOCK: u64 = 1 << 20;

    /// Fills `buf` with the bytes at `pos..pos + buf.len()`.
    pub fn fill_at(pos: u64, buf: &mut [u8]) {
        let mut block = vec![0u8; Self::BLOCK as usize];
        let mut done = 0usize;
        while done < buf.len() {
            let at = pos + done as u64;
            let (index, offset) = (at / Self::BLOCK, (at % Self::BLOCK) as usize);
            Noise::new(index + 1).fill(&mut block);
            let n = (Self::BLOCK as usize - offset).min(buf.len() - done);
            buf[done..done + n].copy_from_slice(&block[offset..offset + n]);
            done += n;
        }
    }

    /// `sha256:<hex>` of the first `len` bytes.
    pub fn digest(len: u64) -> String {
        let mut h = sha2::Sha256::new();
        let mut buf = vec![0u8; Self::BLOCK as usize];
        let mut pos = 0;
        while pos < len {
            let n = (len - pos).min(Self::BLOCK) as usize;
            Self::fill_at(pos, &mut buf[..n]);
            h.update(&buf[..n]);
            pos += n as u64;
        }
        format!("sha256:{}", hex::encode(h.finalize()))
    }
}
