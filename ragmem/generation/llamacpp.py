"""The generator on llama.cpp: a GGUF model run as it ships (``pip install 'ragmem[llamacpp]'``).

    >>> generator = LlamaCppGenerator("SmolLM2-135M-Instruct", threads=2)   # doctest: +SKIP
    >>> state = generator.prefill(generator.render("Answer briefly.", "2 + 2?"))  # doctest: +SKIP
    >>> generator.continuation_logprobs(state, ["4", "5"])                   # doctest: +SKIP
    [array([-0.9], dtype=float32), array([-3.2], dtype=float32)]

The same interface as the transformers generators: a ``Generator`` (render,
count_tokens, generate, stream) and a ``Scorer`` (prefill, continuation_logprobs,
next_logprobs; no hidden states). Tokens
come from llama.cpp's own tokenizer, the chat template from the GGUF. Decoding is greedy
with the repetition penalty applied as transformers applies it (every earlier token,
the prompt's included), so both backends choose by the same rule.

One llama.cpp context holds one prompt at a time: scoring another prompt's continuations
puts that prompt's saved keys and values back first (a copy, no recomputation).
"""

from __future__ import annotations

import ctypes
import os
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from ragmem.errors import ModelError
from ragmem.generation.base import TAIL_TOKENS, PromptState, greedy_token, stripped
from ragmem.generation.scoring import TokenScorer
from ragmem.generation.token_trie import TokenTrie
from ragmem.models import resolve

INSTALL = "pip install 'ragmem[llamacpp]' (builds llama.cpp, ~10+ min on 2 cores)"


class LlamaCppGenerator(TokenScorer):
    """A GGUF model on llama.cpp's CPU kernels; weights load on first use."""

    def __init__(self, name_or_path: str, repetition_penalty: float = 1.0,
                 threads: int | None = None, n_batch: int = 512) -> None:
        self.model_id = name_or_path
        self.repetition_penalty = repetition_penalty
        self.threads = threads
        self.n_batch = n_batch
        self._llm: Any = None
        self._lock = threading.RLock()  # one context: calls take turns
        self._live: tuple[int, ...] | None = None  # the prompt whose KV the context holds

    # -- the shared interface ------------------------------------------------------
    @property
    def context_length(self) -> int:
        return int(self._loaded().n_ctx())

    def render(self, instruction: str, user: str) -> str:
        llm = self._loaded()
        template = llm.metadata.get("tokenizer.chat_template")
        if not template:
            return f"{instruction}\n\n{user}\nAnswer:"
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        formatter = Jinja2ChatFormatter(template=template, eos_token=self._piece(llm.token_eos()),
                                        bos_token=self._piece(llm.token_bos()))
        messages = [{"role": "system", "content": instruction},
                    {"role": "user", "content": user}]
        # The ignore is for llama_cpp's types, which exist only with the extra installed.
        return str(formatter(messages=messages).prompt)  # type: ignore[arg-type, unused-ignore]

    def count_tokens(self, text: str) -> int:
        return len(self._encode(text))

    def end_of_answer_ids(self) -> list[int]:
        return [int(self._loaded().token_eos())]

    def generate(self, prompt: str, max_new_tokens: int) -> str:
        return "".join(self.stream(prompt, max_new_tokens))

    def stream(self, prompt: str, max_new_tokens: int) -> Iterator[str]:
        return stripped(self._pieces(prompt, max_new_tokens))

    # -- scoring steps ---------------------------------------------------------------
    def _plain_ids(self, text: str) -> list[int]:
        return list(self._loaded().tokenize(text.encode("utf-8"), add_bos=False, special=True))

    def _prompt_tokens(self, prompt: str) -> tuple[list[int], str, tuple[int, ...]]:
        ids = self._encode(prompt)
        k = min(TAIL_TOKENS, len(ids))
        # The tail's text from its tokens: re-tokenising it must give them back, which
        # continuation_ids checks before it relies on the tail.
        tail = self._loaded().detokenize(ids[len(ids) - k:], special=True)
        return ids, tail.decode("utf-8", errors="replace"), tuple(ids[len(ids) - k:])

    def _prefill(self, ids: list[int]) -> tuple[np.ndarray, Any]:
        with self._lock:
            self._memory_rm(0)
            self._live = None
            last = self._decode(ids, 0, want=[len(ids) - 1])[0]
            self._live = tuple(ids)
            return last, self._save()

    def _node_logprobs(self, state: PromptState, trie: TokenTrie,
                       nodes: Sequence[int]) -> np.ndarray:
        """Continuations one after another over the prompt's cache, in token order so
        each shares what it can with the one before: every trie node runs once."""
        wanted = {node: row for row, node in enumerate(nodes)}
        # Each path up to its last wanted node; a node is reached through any path to it.
        runs = set()
        for path in trie.paths:
            last = max((j for j, node in enumerate(path) if node in wanted), default=-1)
            if last >= 0:
                runs.add(path[:last + 1])
        out = np.empty((len(nodes), self._loaded().n_vocab()), dtype=np.float32)
        prompt_len = len(state.ids)
        with self._lock:
            self._restore(state)
            current: tuple[int, ...] = ()
            for run in sorted(runs, key=lambda r: [trie.tokens[n] for n in r]):
                shared = 0
                while shared < min(len(run), len(current)) and run[shared] == current[shared]:
                    shared += 1
                self._memory_rm(prompt_len + shared)
                new = run[shared:]
                rows = self._decode([trie.tokens[n] for n in new], prompt_len + shared,
                                    want=[i for i, n in enumerate(new) if n in wanted])
                for row, node in zip(rows, (n for n in new if n in wanted), strict=True):
                    out[wanted[node]] = row
                current = run
        return out

    # -- llama.cpp -------------------------------------------------------------------
    def _loaded(self) -> Any:
        with self._lock:
            if self._llm is None:
                self._llm = self._load()
            return self._llm

    def _load(self) -> Any:
        try:
            from llama_cpp import Llama
        except ImportError as error:
            raise ModelError(f"the llamacpp backend needs llama-cpp-python; {INSTALL}, "
                             "or set generator.backend = 'torch'") from error
        resolved = resolve(self.model_id, "generator")
        if resolved.gguf_file is None:
            raise ModelError(f"{self.model_id} is no GGUF model, which the llamacpp backend "
                             "needs; pass a known GGUF model or set generator.backend = 'torch'")
        threads = self.threads or os.cpu_count() or 1
        try:
            return Llama(os.path.join(resolved.path, resolved.gguf_file), n_ctx=0,
                         n_batch=self.n_batch, n_threads=threads, n_threads_batch=threads,
                         verbose=False)
        except (ValueError, RuntimeError) as error:
            raise ModelError(f"llama.cpp cannot load {self.model_id} ({error})") from error

    def _encode(self, text: str) -> list[int]:
        """As transformers would: the model's own special tokens (a BOS where its GGUF
        says so), none added before a text that already starts with BOS."""
        llm = self._loaded()
        bos = self._piece(llm.token_bos()) if llm.token_bos() >= 0 else ""
        add = not (bos and text.startswith(bos))
        return list(llm.tokenize(text.encode("utf-8"), add_bos=add, special=True))

    def _piece(self, token: int) -> str:
        return bytes(self._loaded().detokenize([token], special=True)).decode("utf-8", "replace")

    def _decode(self, tokens: Sequence[int], start: int, want: Sequence[int],
                raw: bool = False) -> list[np.ndarray]:
        """Run ``tokens`` at positions ``start``... of sequence 0; the log-probs (``raw``:
        the logits) after each token whose index is in ``want``."""
        import llama_cpp

        llm = self._loaded()
        n_vocab = llm.n_vocab()
        wanted = set(want)
        out: list[np.ndarray] = []
        for offset in range(0, len(tokens), self.n_batch):
            part = tokens[offset:offset + self.n_batch]
            batch = llama_cpp.llama_batch_init(len(part), 0, 1)
            try:
                batch.n_tokens = len(part)
                for i, token in enumerate(part):
                    batch.token[i] = token
                    batch.pos[i] = start + offset + i
                    batch.n_seq_id[i] = 1
                    batch.seq_id[i][0] = 0
                    batch.logits[i] = (offset + i) in wanted
                status = llama_cpp.llama_decode(llm.ctx, batch)
                if status != 0:
                    raise ModelError(f"llama.cpp could not decode {len(part)} tokens at "
                                     f"position {start + offset} (status {status}); "
                                     "the prompt may exceed the context")
                for i in range(len(part)):
                    if (offset + i) in wanted:
                        pointer = llama_cpp.llama_get_logits_ith(llm.ctx, i)
                        logits = np.ctypeslib.as_array(pointer, shape=(n_vocab,))
                        out.append(logits.copy() if raw else _log_softmax(logits))
            finally:
                llama_cpp.llama_batch_free(batch)
        return out

    def _memory_rm(self, start: int) -> None:
        """Forget sequence 0 from position ``start`` on."""
        import llama_cpp

        memory = llama_cpp.llama_get_memory(self._loaded().ctx)
        llama_cpp.llama_memory_seq_rm(memory, 0, start, -1)

    def _save(self) -> bytes:
        import llama_cpp

        ctx = self._loaded().ctx
        size = llama_cpp.llama_state_seq_get_size(ctx, 0)
        buffer = (ctypes.c_uint8 * size)()
        written = llama_cpp.llama_state_seq_get_data(ctx, buffer, size, 0)
        return bytes(buffer[:written])

    def _restore(self, state: PromptState) -> None:
        """The context holds ``state``'s prompt and nothing after it."""
        import llama_cpp

        if self._live == state.ids:
            self._memory_rm(len(state.ids))
            return
        self._memory_rm(0)
        data = state.cache
        buffer = (ctypes.c_uint8 * len(data)).from_buffer_copy(data)
        if llama_cpp.llama_state_seq_set_data(self._loaded().ctx, buffer, len(data), 0) == 0:
            raise ModelError("llama.cpp could not restore a prompt's cache; prefill it again")
        self._live = state.ids

    def _pieces(self, prompt: str, max_new_tokens: int) -> Iterator[str]:
        """Greedy decoding, text as it is made (whole characters only)."""
        import llama_cpp

        llm = self._loaded()
        vocab = llama_cpp.llama_model_get_vocab(llm.model)
        with self._lock:
            ids = self._encode(prompt)
            self._memory_rm(0)
            self._live = None
            logits = self._decode(ids, 0, want=[len(ids) - 1], raw=True)[0]
            seen = set(ids)
            made: list[int] = []
            text = b""
            emitted = 0
            for step in range(max_new_tokens):
                token = greedy_token(logits, seen, self.repetition_penalty)
                if llama_cpp.llama_vocab_is_eog(vocab, token):
                    break
                made.append(token)
                seen.add(token)
                text = bytes(llm.detokenize(made, special=False))
                try:
                    decoded = text.decode("utf-8")
                except UnicodeDecodeError:  # a character split across tokens: wait
                    decoded = None
                if decoded is not None and len(decoded) > emitted:
                    yield decoded[emitted:]
                    emitted = len(decoded)
                if step + 1 < max_new_tokens:
                    logits = self._decode([token], len(ids) + step, want=[0], raw=True)[0]
            tail = text.decode("utf-8", errors="replace")
            if len(tail) > emitted:
                yield tail[emitted:]


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    logits = logits.astype(np.float32)
    top = logits.max()
    return logits - (top + np.log(np.exp(logits - top).sum()))
