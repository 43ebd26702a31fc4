"""Configuration of a raybio model exported for Hugging Face transformers (torch + transformers only)."""

from transformers import PretrainedConfig


class RaybioConfig(PretrainedConfig):
    """A raybio BioLM: embeddings, one block per letter of `blocks`, final norm, LM head.

    Blocks: D = attention + dense SwiGLU, A = attention + routed SwiGLU experts (`moe`),
    H = HyenaLite with a modal long filter (`hyena`) + dense SwiGLU. `objective` "ntp" makes
    every mixer causal, "mlm" bidirectional. `logit_scale` multiplies the LM logits (1/m under µP).
    """

    model_type = "raybio"

    def __init__(
        self,
        vocab_size: int = 64,
        d_model: int = 128,
        n_heads: int = 4,
        ffn_hidden: int = 512,
        blocks: str = "D",
        objective: str = "mlm",
        norm: str = "rmsnorm",
        max_seq_len: int = 1024,
        rope_theta: float = 10000.0,
        tie_embeddings: bool = True,
        logit_scale: float = 1.0,
        moe: dict | None = None,
        hyena: dict | None = None,
        pad_token_id: int = 0,
        **kwargs,
    ):
        self.vocab_size = vocab_size
        self.d_model = self.hidden_size = d_model
        self.n_heads = n_heads
        self.n_layers = self.num_hidden_layers = len(blocks)
        self.ffn_hidden = ffn_hidden
        self.blocks = blocks
        self.objective = objective
        self.norm = norm
        self.max_seq_len = self.max_position_embeddings = max_seq_len
        self.rope_theta = rope_theta
        self.tie_embeddings = tie_embeddings
        self.logit_scale = logit_scale
        self.moe = dict(moe or {})
        self.hyena = dict(hyena or {})
        # The head shares the embedding matrix itself when tie_embeddings is set; transformers'
        # own tying machinery stays off.
        kwargs["tie_word_embeddings"] = False
        super().__init__(pad_token_id=pad_token_id, **kwargs)
