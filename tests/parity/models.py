"""The example models written in PyTorch, with the same masking as the
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
    nn.TransformerEncoderLayer (post-norm, GELU, dropout `drop`), mean
    pooling over the real tokens, a linear classifier."""

    def __init__(self, vocab, embed, heads, classes, drop=0.0):
        super().__init__()
        self.embedding = nn.Embedding(vocab, embed)
        self.position = nn.Embedding(256, embed)

        def layer():
            return nn.TransformerEncoderLayer(embed, heads, 4 * embed, dropout=drop, activation="gelu",
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


class ConvPool(nn.Module):
    """One branch of examples/textcnn.kiln: nn.Conv1d over the sequence, ReLU,
    the maximum over the windows inside the text. A text shorter than the
    kernel has no such window and gives 0, as kiln's masked max does."""

    def __init__(self, dim, filters, width):
        super().__init__()
        self.conv = nn.Conv1d(dim, filters, width)
        self.width = width

    def forward(self, x, real):
        y = torch.relu(self.conv(x.transpose(1, 2)))  # [B, filters, T - width + 1]
        inside = real[:, self.width - 1:].unsqueeze(1)
        y = y.masked_fill(~inside, float("-inf")).amax(dim=2)
        return torch.where(torch.isinf(y), torch.zeros_like(y), y)


class TextCNN(nn.Module):
    """examples/textcnn.kiln (Kim 2014): convolutions of widths 3, 4, 5, max
    over time, joined, dropout, a linear classifier."""

    def __init__(self, vocab, embed, filters, classes, drop):
        super().__init__()
        self.embedding = nn.Embedding(vocab, embed)
        self.conv3 = ConvPool(embed, filters, 3)
        self.conv4 = ConvPool(embed, filters, 4)
        self.conv5 = ConvPool(embed, filters, 5)
        self.fc = nn.Linear(3 * filters, classes)
        self.dropout = nn.Dropout(drop)

    def forward(self, tokens):
        real = tokens != 0
        x = self.embedding(tokens)
        pooled = torch.cat([self.conv3(x, real), self.conv4(x, real), self.conv5(x, real)], dim=1)
        return self.fc(self.dropout(pooled))


class BiGRU(nn.Module):
    """examples/bigru.kiln: nn.GRU(bidirectional=True) over the packed
    sequence of each batch (zeros after each text's end), attention pooling
    (softmax over the real tokens of score(tanh(h)), the weighted sum), a
    linear classifier."""

    def __init__(self, vocab, embed, hidden, classes):
        super().__init__()
        self.embedding = nn.Embedding(vocab, embed)
        self.gru = nn.GRU(embed, hidden, bidirectional=True, batch_first=True)
        self.score = nn.Linear(2 * hidden, 1)
        self.fc = nn.Linear(2 * hidden, classes)

    def forward(self, tokens):
        real = tokens != 0
        lengths = real.sum(dim=1)
        packed = nn.utils.rnn.pack_padded_sequence(self.embedding(tokens), lengths, batch_first=True,
                                                   enforce_sorted=False)
        h, _ = nn.utils.rnn.pad_packed_sequence(self.gru(packed)[0], batch_first=True, total_length=tokens.shape[1])
        scores = self.score(torch.tanh(h)).masked_fill(~real.unsqueeze(2), float("-inf"))
        weights = torch.softmax(scores, dim=1)
        return self.fc((weights * h).sum(dim=1))


class TextCat(nn.Module):
    """examples/textcat.kiln (fastText): the mean of the embeddings of a
    text's words (token id != 0) and of its hashed word pairs (bigram id !=
    0; none at the first token nor in the padding), taken as kiln does it:
    (sum of the kept word vectors + sum of the kept pair vectors) / (number of
    kept words + number of kept pairs), then a linear classifier."""

    def __init__(self, vocab, buckets, embed, classes):
        super().__init__()
        self.words = nn.Embedding(vocab, embed)
        self.pairs = nn.Embedding(buckets, embed)
        self.out = nn.Linear(embed, classes)

    def forward(self, tokens, bigrams):
        word = (tokens != 0).unsqueeze(2)
        pair = (bigrams != 0).unsqueeze(2)
        total = (self.words(tokens) * word).sum(dim=1) + (self.pairs(bigrams) * pair).sum(dim=1)
        count = word.float().sum(dim=1) + pair.float().sum(dim=1)
        return self.out(total / count)
