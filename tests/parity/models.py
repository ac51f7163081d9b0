"""The three example models written in PyTorch, with the same masking as the
.kiln files: padded positions (token id 0) get no attention weight and are
left out of the pooling. Parameter names match kiln's."""
import math

import torch
import torch.nn as nn


class AdditiveAttention(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.linear1 = nn.Linear(dim, dim)
        self.linear2 = nn.Linear(dim, 1)

    def forward(self, q, k, v, mask):
        scores = self.linear2(torch.tanh(self.linear1(q) + k))
        weights = torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=1)
        return weights * v


class SelfAttention(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.query = nn.Linear(dim, dim)
        self.key = nn.Linear(dim, dim)
        self.value = nn.Linear(dim, dim)
        self.dim = dim

    def forward(self, x, key_mask):
        q, k, v = self.query(x), self.key(x), self.value(x)
        scores = q @ k.transpose(1, 2) / math.sqrt(self.dim)
        weights = torch.softmax(scores.masked_fill(~key_mask, float("-inf")), dim=2)
        return weights @ v


class TextClassifier(nn.Module):
    """variant: 'additive' (seed: mean pooling), 'attnpool' (sum pooling) or 'sdpa'."""

    def __init__(self, variant, vocab, embed, hidden, classes):
        super().__init__()
        self.variant = variant
        self.embedding = nn.Embedding(vocab, embed)
        self.attention = SelfAttention(embed) if variant == "sdpa" else AdditiveAttention(embed)
        self.fc1 = nn.Linear(embed, hidden)
        self.fc2 = nn.Linear(hidden, classes)

    def forward(self, tokens):
        real = tokens != 0
        mask = real.unsqueeze(2)
        x = self.embedding(tokens)
        if self.variant == "sdpa":
            x = self.attention(x, real.unsqueeze(1))
        else:
            x = self.attention(x, x, x, mask)
        summed = (x * mask).sum(dim=1)
        x = summed if self.variant == "attnpool" else summed / mask.sum(dim=1)
        x = torch.relu(self.fc1(x))
        return self.fc2(x)


class TransformerClassifier(nn.Module):
    """examples/transformer.kiln: token and position embeddings, two
    nn.TransformerEncoderLayer (post-norm, GELU, no dropout), mean pooling
    over the real tokens, a linear classifier."""

    def __init__(self, vocab, embed, heads, classes):
        super().__init__()
        self.embedding = nn.Embedding(vocab, embed)
        self.position = nn.Embedding(256, embed)

        def layer():
            return nn.TransformerEncoderLayer(embed, heads, 4 * embed, dropout=0.0, activation="gelu",
                                              batch_first=True)

        self.layer0 = layer()
        self.layer1 = layer()
        self.fc = nn.Linear(embed, classes)

    def forward(self, tokens):
        real = tokens != 0
        positions = torch.arange(tokens.shape[1]).expand_as(tokens)
        x = self.embedding(tokens) + self.position(positions)
        x = self.layer1(self.layer0(x, src_key_padding_mask=~real), src_key_padding_mask=~real)
        mask = real.unsqueeze(2)
        return self.fc((x * mask).sum(dim=1) / mask.sum(dim=1))
