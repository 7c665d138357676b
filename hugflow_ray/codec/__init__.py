"""The audio codec: any audio value a row can hold -> a mono CBR MP3 (decoding, mixdown, resampling, LAME)."""
