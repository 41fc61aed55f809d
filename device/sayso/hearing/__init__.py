"""What runs on the mic side: capture, echo cancelling, voice activity, end of turn and speech recognition."""
