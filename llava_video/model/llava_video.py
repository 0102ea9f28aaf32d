"""The composed model: vision tower -> projector (+ frame pooling) -> placeholders -> language model.

It takes exactly the tensors transformers' LLaVA-NeXT-Video processor makes (``input_ids`` with
``<image>``/``<video>`` placeholders already expanded, ``pixel_values`` + ``image_sizes`` for AnyRes
images, ``pixel_values_videos`` for frames) and knows nothing of files, prompts or templates.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from llava_video.config import LlavaVideoConfig
from llava_video.errors import InputError
from llava_video.model import anyres
from llava_video.model.frame_pooling import FramePooler
from llava_video.model.language_model import build_language_model, rope_linear_factor, set_rope_linear_factor
from llava_video.model.packed_attention import packed_row_kwargs
from llava_video.model.projector import Projector
from llava_video.model.vision_tower import VisionTower

__all__ = ["LlavaVideo", "LlavaVideoOutput"]

ImageSizes = torch.Tensor | Sequence[Sequence[int]]


@dataclass
class LlavaVideoOutput:
    logits: torch.Tensor | None
    loss: torch.Tensor | None = None
    past_key_values: Any = None
    hidden_states: torch.Tensor | None = None


class LlavaVideo(nn.Module):
    """A LLaVA-NeXT-Video model. Build with ``LlavaVideo(config)`` or ``LlavaVideo.from_pretrained(path)``."""

    def __init__(self, config: LlavaVideoConfig, *, attn_implementation: str = "sdpa") -> None:
        super().__init__()
        self.config = config
        self.vision_tower = VisionTower(config.vision, config.feature, chunk_size=config.vision_chunk_size)
        self.language_model = build_language_model(config.text, attn_implementation=attn_implementation)
        hidden = self.language_model.config.hidden_size
        self.multi_modal_projector = Projector(
            config.projector, in_features=self.vision_tower.hidden_size, out_features=hidden
        )
        self.frame_pooler = FramePooler(config.pooling)
        self.image_newline = nn.Parameter(torch.randn(hidden) / hidden**0.5)
        # Attached by from_pretrained / the caller; saved with the checkpoint when present.
        self.tokenizer: Any = None
        self.image_processor: Any = None

    def compile_blocks(self, *, dynamic: bool = True) -> None:
        """torch.compile each transformer block of the tower and the LM, in place.

        Blocks rather than the whole model: the glue between them (placeholder filling, pooling, packing)
        changes shape with every batch, while a block is the same small graph 24-80 times over, so it
        compiles once. ``dynamic`` keeps one graph across sequence lengths.
        """
        for layer in [*self.vision_tower.vision_model.encoder.layers, *self.language_model.get_decoder().layers]:
            layer.compile(dynamic=dynamic)

    # ---- conveniences ---------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return self.image_newline.device

    @property
    def dtype(self) -> torch.dtype:
        return self.image_newline.dtype

    @property
    def rope_factor(self) -> float:
        return rope_linear_factor(self.language_model)

    def set_rope_factor(self, factor: float) -> None:
        """Linear RoPE scaling from now on (1.0 = none); recorded in the config that is saved."""
        set_rope_linear_factor(self.language_model, factor)
        self.config.text["rope_parameters"] = dict(self.language_model.config.rope_parameters)

    @property
    def context_length(self) -> int:
        """Positions the language model can attend to with the current RoPE factor."""
        return int(self.config.max_position_embeddings * self.rope_factor)

    # ---- visual encoders ------------------------------------------------------------------------
    def _project_tiles(self, tiles: torch.Tensor) -> torch.Tensor:
        return self.multi_modal_projector(self.vision_tower(tiles))  # (n, p, D)

    def encode_images(self, pixel_values: torch.Tensor | Sequence[torch.Tensor], image_sizes: ImageSizes) -> list[torch.Tensor]:
        """AnyRes images -> one (tokens_i, D) tensor per image: base tile, then unpadded grid with row newlines."""
        cfg = self.config
        sizes = [tuple(int(v) for v in s) for s in (image_sizes.tolist() if torch.is_tensor(image_sizes) else image_sizes)]
        num_tiles = [anyres.num_image_tiles(s, cfg.anyres.grid_pinpoints, cfg.image_size) for s in sizes]
        if isinstance(pixel_values, torch.Tensor) and pixel_values.dim() == 5:
            if pixel_values.shape[0] != len(sizes):
                raise InputError(f"pixel_values holds {pixel_values.shape[0]} images but image_sizes has {len(sizes)}")
            if pixel_values.shape[1] < max(num_tiles):
                raise InputError(f"pixel_values has {pixel_values.shape[1]} tiles per image, AnyRes needs {max(num_tiles)}")
            # Padded (b, max_tiles, 3, S, S): keep each image's real tiles only.
            tiles = torch.cat([pv[:n] for pv, n in zip(pixel_values, num_tiles)])  # (sum tiles, 3, S, S)
        else:
            tiles = torch.cat(list(pixel_values)) if not isinstance(pixel_values, torch.Tensor) else pixel_values
            if tiles.shape[0] != sum(num_tiles):
                raise InputError(f"pixel_values has {tiles.shape[0]} tiles, image_sizes imply {sum(num_tiles)}")
        feats = self._project_tiles(tiles.to(self.device))  # (sum tiles, p, D)
        side = cfg.patches_per_side
        out = []
        for size, tile_feats in zip(sizes, feats.split(num_tiles)):
            base = tile_feats[0]  # (p, D), CLS kept when selected
            grid = tile_feats[1:, -side * side :]  # (tiles, side*side, D): CLS never enters the stitched map
            rows, cols = anyres.tile_grid_shape(size, cfg.anyres.grid_pinpoints, cfg.image_size)
            d = grid.shape[-1]
            stitched = (
                grid.view(rows, cols, side, side, d).permute(0, 2, 1, 3, 4).reshape(rows * side, cols * side, d)
            )  # (H, W, D): tiles placed back side by side
            h, w = anyres.unpadded_feature_size(size, (rows * side, cols * side))
            top, left = (rows * side - h) // 2, (cols * side - w) // 2
            stitched = stitched[top : top + h, left : left + w]  # (h, w, D) without the letterbox
            new_h, new_w = anyres.anyres_max_downscaled_size((h, w), side, cfg.anyres.max_tiles)
            if (new_h, new_w) != (h, w):
                chw = stitched.permute(2, 0, 1)[None]  # (1, D, h, w)
                chw = F.interpolate(chw, size=(new_h, new_w), mode="bilinear", align_corners=False)
                stitched = chw[0].permute(1, 2, 0)  # (h', w', D)
            newline = self.image_newline.to(stitched.dtype).expand(stitched.shape[0], 1, d)  # (h', 1, D)
            rows_with_newline = torch.cat([stitched, newline], dim=1)  # (h', w'+1, D)
            out.append(torch.cat([base, rows_with_newline.reshape(-1, d)]))  # (tokens, D)
        return out

    def encode_videos(self, pixel_values_videos: torch.Tensor | Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Videos -> one (tokens_v, D) tensor per video: frames encoded, pooled per frame, newlines placed."""
        videos = list(pixel_values_videos)  # each (f, 3, S, S)
        frames_per_video = [v.shape[0] for v in videos]
        frames = torch.cat(videos).to(self.device)  # (sum f, 3, S, S)
        side = self.config.patches_per_side
        feats = self.vision_tower(frames)[:, -side * side :]  # (n, side*side, d): CLS cannot be pooled
        if self.config.pooling.position == "before_projector":
            feats = self.multi_modal_projector(self.frame_pooler(feats))  # (n, q, D)
        else:
            feats = self.frame_pooler(self.multi_modal_projector(feats))  # (n, q, D)
        q_side = self.config.pooled_side
        out = []
        for video in feats.split(frames_per_video):
            f, q, d = video.shape
            newline = self.image_newline.to(video.dtype)
            mode = self.config.video_newline
            if mode == "frame":
                video = torch.cat([video, newline.expand(f, 1, d)], dim=1)  # (f, q+1, D)
            elif mode == "row":
                grid = video.view(f, q_side, q_side, d)
                video = torch.cat([grid, newline.expand(f, q_side, 1, d)], dim=2)  # (f, s, s+1, D)
            tokens = video.reshape(-1, d)  # (f * tokens_per_frame, D)
            if mode == "video":
                tokens = torch.cat([tokens, newline[None]])
            out.append(tokens)
        return out

    # ---- embedding assembly ---------------------------------------------------------------------
    def embed_inputs(
        self,
        input_ids: torch.Tensor,
        *,
        pixel_values: torch.Tensor | Sequence[torch.Tensor] | None = None,
        image_sizes: ImageSizes | None = None,
        pixel_values_videos: torch.Tensor | Sequence[torch.Tensor] | None = None,
        image_features: Sequence[torch.Tensor] | None = None,
        video_features: Sequence[torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Token embeddings with every placeholder replaced by its visual feature, in reading order."""
        if image_features is None and pixel_values is not None:
            if image_sizes is None:
                raise InputError("pixel_values given without image_sizes")
            image_features = self.encode_images(pixel_values, image_sizes)
        if video_features is None and pixel_values_videos is not None:
            video_features = self.encode_videos(pixel_values_videos)
        image_id, video_id = self.config.image_token_id, self.config.video_token_id
        is_image, is_video = input_ids == image_id, input_ids == video_id
        # Placeholder ids may lie outside the vocabulary; look up a harmless id there instead.
        safe_ids = input_ids.masked_fill(is_image | is_video, 0)
        embeds = self.language_model.get_input_embeddings()(safe_ids)  # (b, L, D)
        for name, mask, feats in (("<image>", is_image, image_features), ("<video>", is_video, video_features)):
            n_tokens = int(mask.sum())
            if feats is None or len(feats) == 0:
                if n_tokens:
                    raise InputError(f"input_ids hold {n_tokens} {name} placeholder tokens but no {name[1:-1]} input was given")
                continue
            flat = torch.cat(list(feats))  # (total tokens, D)
            if n_tokens != flat.shape[0]:
                raise InputError(
                    f"{name} placeholder tokens ({n_tokens}) do not match the visual features ({flat.shape[0]} tokens "
                    f"from {len(feats)} {name[1:-1]}(s)); expand each placeholder to its token count"
                )
            embeds = embeds.masked_scatter(mask.unsqueeze(-1), flat.to(embeds.dtype))
        return embeds

    # ---- forward --------------------------------------------------------------------------------
    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        pixel_values: torch.Tensor | Sequence[torch.Tensor] | None = None,
        image_sizes: ImageSizes | None = None,
        pixel_values_videos: torch.Tensor | Sequence[torch.Tensor] | None = None,
        labels: torch.Tensor | None = None,
        *,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        past_key_values: Any = None,
        use_cache: bool = False,
        return_logits: bool = True,
        **lm_kwargs: Any,
    ) -> LlavaVideoOutput:
        """Logits over the vocabulary (b, L, V) and, with ``labels``, the mean next-token loss.

        ``labels`` use ``config.ignore_index`` on prompt and visual tokens. With ``return_logits=False``
        the LM head runs only on positions that carry a label (training), and ``logits`` is None.
        Packed batches pass ``position_ids`` that restart at 0 per sample and no ``attention_mask``.
        """
        if inputs_embeds is None:
            if input_ids is None:
                raise InputError("pass input_ids or inputs_embeds")
            inputs_embeds = self.embed_inputs(
                input_ids, pixel_values=pixel_values, image_sizes=image_sizes, pixel_values_videos=pixel_values_videos
            )
        if position_ids is not None and past_key_values is None and attention_mask is None and inputs_embeds.shape[0] == 1:
            # A packed row: find the sample boundaries once here rather than in every attention layer.
            lm_kwargs = {**packed_row_kwargs(position_ids), **lm_kwargs}
        decoder = self.language_model.get_decoder()
        out = decoder(
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            position_ids=position_ids,
            past_key_values=past_key_values,
            use_cache=use_cache,
            **lm_kwargs,
        )
        hidden = out.last_hidden_state  # (b, L, D)
        lm_head = self.language_model.get_output_embeddings()
        logits = lm_head(hidden) if return_logits else None
        loss = None
        if labels is not None:
            loss = self.next_token_loss(hidden, labels, logits=logits)
        return LlavaVideoOutput(logits=logits, loss=loss, past_key_values=out.past_key_values, hidden_states=hidden)

    def next_token_loss(self, hidden: torch.Tensor, labels: torch.Tensor, *, logits: torch.Tensor | None = None) -> torch.Tensor:
        """Mean cross-entropy of predicting ``labels[t+1]`` at position t, over labelled targets only."""
        targets = labels[:, 1:]  # (b, L-1)
        keep = targets != self.config.ignore_index
        if logits is not None:
            picked = logits[:, :-1][keep]  # (n, V)
        else:
            picked = self.language_model.get_output_embeddings()(hidden[:, :-1][keep])  # (n, V)
        if picked.shape[0] == 0:
            # No labelled token: a zero that still depends on the graph, so backward works everywhere.
            return hidden.sum() * 0.0
        return F.cross_entropy(picked.float(), targets[keep])

    # ---- generation -----------------------------------------------------------------------------
    @torch.no_grad()
    def generate(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        *,
        pixel_values: torch.Tensor | Sequence[torch.Tensor] | None = None,
        image_sizes: ImageSizes | None = None,
        pixel_values_videos: torch.Tensor | Sequence[torch.Tensor] | None = None,
        inputs_embeds: torch.Tensor | None = None,
        max_new_tokens: int = 64,
        do_sample: bool = False,
        temperature: float = 1.0,
        top_p: float = 1.0,
        top_k: int = 0,
        eos_token_id: int | Sequence[int] | None = None,
        pad_token_id: int | None = None,
        generator: torch.Generator | None = None,
        on_token: Callable[[torch.Tensor], bool | None] | None = None,
        past_key_values: Any = None,
        return_cache: bool = False,
    ) -> Any:
        """New token ids (b, n <= max_new_tokens), decoded with a KV cache; finished rows padded.

        Left-pad batches (``attention_mask`` zeros on the left). ``on_token`` receives each step's
        (b,) tokens, for streaming; returning True stops generation. To continue a conversation, pass
        the ``past_key_values`` of an earlier call and only the new tokens; ``attention_mask`` then
        covers past and new tokens. With ``return_cache`` the result is ``(tokens, cache)``; the cache
        holds every token but the last one generated.
        """
        if inputs_embeds is None:
            inputs_embeds = self.embed_inputs(
                input_ids, pixel_values=pixel_values, image_sizes=image_sizes, pixel_values_videos=pixel_values_videos
            )
        b, new_len, _ = inputs_embeds.shape
        device = inputs_embeds.device
        past_len = past_key_values.get_seq_length() if past_key_values is not None else 0
        prompt_len = past_len + new_len
        if attention_mask is None:
            attention_mask = torch.ones(b, prompt_len, dtype=torch.long, device=device)
        attention_mask = attention_mask.to(device=device, dtype=torch.long)
        if attention_mask.shape[1] != prompt_len:
            raise InputError(f"attention_mask covers {attention_mask.shape[1]} positions, past + new tokens are {prompt_len}")
        if prompt_len + max_new_tokens > self.context_length:
            raise InputError(
                f"prompt ({prompt_len} tokens) + max_new_tokens ({max_new_tokens}) exceed the context "
                f"({self.context_length} positions at RoPE factor {self.rope_factor:g})"
            )
        eos = _as_id_set(eos_token_id if eos_token_id is not None else getattr(self.tokenizer, "eos_token_id", None))
        pad = pad_token_id if pad_token_id is not None else (min(eos) if eos else 0)
        # Positions count real tokens only, so left padding does not shift the rotary phase.
        position_ids = (attention_mask.cumsum(-1) - 1).masked_fill(attention_mask == 0, 1)[:, past_len:]
        embed = self.language_model.get_input_embeddings()
        unfinished = torch.ones(b, dtype=torch.bool, device=device)
        generated: list[torch.Tensor] = []
        past = past_key_values
        step_embeds = inputs_embeds
        for _ in range(max_new_tokens):
            out = self.forward(
                inputs_embeds=step_embeds,
                attention_mask=attention_mask,
                position_ids=position_ids,
                past_key_values=past,
                use_cache=True,
                return_logits=False,
            )
            past = out.past_key_values
            logits = self.language_model.get_output_embeddings()(out.hidden_states[:, -1]).float()  # (b, V)
            next_tokens = _pick_next(logits, do_sample, temperature, top_p, top_k, generator)
            next_tokens = torch.where(unfinished, next_tokens, torch.full_like(next_tokens, pad))
            generated.append(next_tokens)
            stop = bool(on_token(next_tokens)) if on_token is not None else False
            if eos:
                unfinished &= ~torch.isin(next_tokens, torch.tensor(sorted(eos), device=device))
            if stop or not unfinished.any():
                break
            attention_mask = torch.cat([attention_mask, attention_mask.new_ones(b, 1)], dim=1)
            position_ids = position_ids[:, -1:] + 1
            step_embeds = embed(next_tokens[:, None])  # (b, 1, D)
        tokens = torch.stack(generated, dim=1) if generated else torch.empty(b, 0, dtype=torch.long, device=device)
        return (tokens, past) if return_cache else tokens

    # ---- conversation ---------------------------------------------------------------------------
    def chat(self, *, video: Any = None, prompt: str | None = None, history: Sequence[Any] = (), frames: int | str | None = 32, **kwargs: Any) -> Any:
        """Ask about a video (a path or a decoded ``VideoClip``) and/or ``images=[...]``.

        Returns a ``ChatResult`` (``.answer``, frame indices, budget and timings). ``history`` holds earlier
        (question, answer) pairs or messages; ``frames="auto"`` picks the most frames that fit; generation
        keywords: ``max_new_tokens``, ``temperature`` (0 = greedy), ``top_p``, ``top_k``, ``seed``; ``on_text``
        receives the answer as it streams. See ``llava_video.inference.pipeline.ask``.
        """
        from llava_video.inference.pipeline import DEFAULT_PROMPT, ask

        return ask(self, video=video, prompt=prompt or DEFAULT_PROMPT, history=history, frames=frames, **kwargs)

    # ---- checkpoints ----------------------------------------------------------------------------
    @classmethod
    def from_pretrained(
        cls,
        path_or_id: str | Path,
        *,
        device: str | torch.device = "cpu",
        dtype: str | torch.dtype = "float32",
        attn_implementation: str = "auto",
        **kwargs: Any,
    ) -> "LlavaVideo":
        """Load a llava-hf (transformers 4.x or 5.x names) or original LLaVA-NeXT checkpoint."""
        from llava_video.model.checkpoints import load_pretrained

        return load_pretrained(
            cls, path_or_id, device=device, dtype=dtype, attn_implementation=attn_implementation, **kwargs
        )

    def save_pretrained(self, directory: str | Path, **kwargs: Any) -> Path:
        """Write the llava-hf layout (4.x key names) that transformers loads with no missing keys."""
        from llava_video.model.checkpoints import save_pretrained

        return save_pretrained(self, directory, **kwargs)


def _as_id_set(ids: int | Sequence[int] | None) -> set[int]:
    if ids is None:
        return set()
    return {int(ids)} if isinstance(ids, int) else {int(i) for i in ids}


def _pick_next(
    logits: torch.Tensor, do_sample: bool, temperature: float, top_p: float, top_k: int, generator: torch.Generator | None
) -> torch.Tensor:
    """Greedy argmax, or a sample after temperature, top-k and nucleus (top-p) filtering."""
    if not do_sample or temperature <= 0:
        return logits.argmax(dim=-1)
    logits = logits / temperature
    if top_k > 0:
        kth = torch.topk(logits, min(top_k, logits.shape[-1])).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        cum = sorted_logits.softmax(-1).cumsum(-1)
        # Drop a token once the mass before it already reaches top_p; the top token always stays.
        drop_sorted = (cum - sorted_logits.softmax(-1)) >= top_p
        drop = drop_sorted.scatter(1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    probs = logits.softmax(-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(1)
