"""Fine-tune MusicGen text-to-music models with LoRA adapters on the Hugging Face stack."""

__version__ = "0.1.0"
