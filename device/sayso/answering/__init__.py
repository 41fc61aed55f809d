"""What runs on the speaker side: the LLM, the chunker, the voice and playback."""
