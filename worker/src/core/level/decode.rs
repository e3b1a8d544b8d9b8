//! Codec frames to PCM levels with symphonia (pure Rust, no ffmpeg on the ingest path).
//!
//! The frames are the ones the source's parser already cut, so no demuxer is needed: an MPEG
//! audio frame goes to the decoder whole, an ADTS frame without its header (symphonia's AAC
//! decoder reads raw access units). HE-AAC is signalled implicitly in ADTS, so the LC decoder
//! yields the band-limited core, which is all a level meter needs.

use symphonia::core::audio::Channels;
use symphonia::core::codecs::audio::well_known::{CODEC_ID_AAC, CODEC_ID_MP3};
use symphonia::core::codecs::audio::{AudioCodecParameters, AudioDecoder, AudioDecoderOptions};
use symphonia::core::packet::PacketRef;
use symphonia::core::units::{Duration, Timestamp};
use symphonia::default::codecs::{AacDecoder, MpaDecoder};

use super::{Meter, Window};
use crate::core::codec::{Frame, Header};

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("the decoder does not support this stream: {0}")]
    Unsupported(String),
}

/// Decodes one source's frames and meters them. A new encoding (a different sample rate or
/// channel count) gets a new decoder; a frame that fails to decode counts as silence for its
/// duration, so garbage never stops the meter and never shifts the sample clock.
pub struct FrameDecoder {
    current: Option<Current>,
    planes: Vec<Vec<f32>>,
    silence: Vec<f32>,
    /// Frames that did not decode, for the source's counters.
    pub failed_frames: u64,
}

struct Current {
    header: Header,
    decoder: Box<dyn AudioDecoder>,
    meter: Meter,
    ts: i64,
}

impl Default for FrameDecoder {
    fn default() -> Self {
        FrameDecoder::new()
    }
}

impl FrameDecoder {
    pub fn new() -> FrameDecoder {
        FrameDecoder {
            current: None,
            planes: Vec::new(),
            silence: Vec::new(),
            failed_frames: 0,
        }
    }

    /// The sample rate of the encoding being metered.
    pub fn sample_rate(&self) -> Option<u32> {
        self.current.as_ref().map(|c| c.meter.sample_rate())
    }

    /// Decodes one frame and returns the level windows it completed. Windows restart at sample 0
    /// when the encoding changes.
    pub fn push(&mut self, frame: &Frame) -> Result<Vec<Window>, DecodeError> {
        if !self
            .current
            .as_ref()
            .is_some_and(|c| c.header.same_stream(&frame.header))
        {
            self.current = Some(Current::new(frame.header)?);
        }
        let Some(current) = self.current.as_mut() else {
            return Ok(Vec::new());
        };
        let payload = match frame.header {
            Header::Mpeg(_) => &frame.data[..],
            Header::Adts(h) => frame.data.get(h.header_len..).unwrap_or_default(),
        };
        let samples = frame.header.samples();
        let packet = PacketRef::new(
            0,
            Timestamp::new(current.ts),
            Duration::new(u64::from(samples)),
            payload,
        );
        current.ts += i64::from(samples);
        match current.decoder.decode_ref(&packet) {
            Ok(buf) => {
                buf.copy_to_vecs_planar::<f32>(&mut self.planes);
                let planes: Vec<&[f32]> = self.planes.iter().map(Vec::as_slice).collect();
                Ok(current.meter.push_planar(&planes))
            }
            Err(_) => {
                self.failed_frames += 1;
                self.silence.resize(samples as usize, 0.0);
                let planes = vec![self.silence.as_slice(); current.meter.channels()];
                Ok(current.meter.push_planar(&planes))
            }
        }
    }
}

fn channels(header: &Header) -> u16 {
    match header {
        Header::Mpeg(h) => u16::from(h.channels()),
        Header::Adts(h) => u16::from(h.channels),
    }
}

impl Current {
    fn new(header: Header) -> Result<Current, DecodeError> {
        let count = channels(&header);
        // ADTS channel configuration 0 defers the layout to an in-band element symphonia cannot
        // read; metering it as silence would raise false dead-air alarms.
        if count == 0 {
            return Err(DecodeError::Unsupported(
                "AAC channel layout from a program config element".into(),
            ));
        }
        let mut params = AudioCodecParameters::new();
        params
            .with_sample_rate(header.sample_rate())
            .with_channels(Channels::Discrete(count));
        let opts = AudioDecoderOptions::default();
        let decoder: Box<dyn AudioDecoder> = match header {
            Header::Mpeg(_) => {
                params.for_codec(CODEC_ID_MP3);
                Box::new(
                    MpaDecoder::try_new(&params, &opts)
                        .map_err(|e| DecodeError::Unsupported(e.to_string()))?,
                )
            }
            Header::Adts(_) => {
                params.for_codec(CODEC_ID_AAC);
                Box::new(
                    AacDecoder::try_new(&params, &opts)
                        .map_err(|e| DecodeError::Unsupported(e.to_string()))?,
                )
            }
        };
        Ok(Current {
            header,
            decoder,
            meter: Meter::new(header.sample_rate(), usize::from(count)),
            ts: 0,
        })
    }
}
