"""Writes a small labelled dataset (TSV) whose classes are scripts: Arabic,
Hindi, Thai, Chinese and emoji texts, each drawn from a few words of its
own with shared punctuation and digits, so that a model can tell them apart
only if the tokenizer gives tokens for every script. Seeded.

usage: make_multilingual_data.py OUT.tsv N SEED"""
import random
import sys

out, n, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(seed)
words = {
    "ar": "مرحبا شكرا كتاب مدرسة بيت سلام صباح الخير قهوة".split(),
    "hi": "नमस्ते धन्यवाद किताब स्कूल घर पानी सुबह दोस्त".split(),
    "th": "สวัสดี ขอบคุณ หนังสือ โรงเรียน บ้าน น้ำ เพื่อน".split(),
    "zh": "你好 谢谢 书 学校 家 水 朋友 早上".split(),
    "emoji": "🙂 😀 👍🏽 ❤️ 🎉 🍕 🚀 🌧".split(),
}
shared = ["!", "?", ",", "...", "2024", "—"]
with open(out, "w", encoding="utf-8") as f:
    for _ in range(n):
        label = rng.choice(sorted(words))
        length = rng.randint(2, 12)
        text = " ".join(rng.choice(words[label]) if rng.random() < 0.7 else rng.choice(shared) for _ in range(length))
        f.write(f"{label}\t{text}\n")
