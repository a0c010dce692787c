"""Recall case inversecooking_sample_data (fixed): sample() returns the stacked logits with their graph."""
# https://github.com/facebookresearch/inversecooking/issues/3 -- sample() returned torch.stack(logits, 1).data, so the ingredient loss built on those logits was cut from the decoder and image encoder (fixed in 3ab629c).
import torch
import torch.nn as nn
import torch.nn.functional as F


def label2onehot(labels, pad_value):
    inp_ = torch.unsqueeze(labels, 2)
    one_hot = torch.FloatTensor(labels.size(0), labels.size(1), pad_value + 1).zero_()
    one_hot.scatter_(2, inp_, 1)
    one_hot, _ = one_hot.max(dim=1)
    one_hot = one_hot[:, :-1]
    one_hot[:, 0] = 0
    return one_hot


class DecoderTransformer(nn.Module):
    def __init__(self, embed_size, vocab_size, seq_length=20, attention_nheads=4):
        super().__init__()
        self.seq_length = seq_length
        self.embed_tokens = nn.Embedding(vocab_size, embed_size, padding_idx=vocab_size - 1)
        self.layer = nn.TransformerDecoderLayer(embed_size, attention_nheads, batch_first=True, norm_first=True)
        self.linear = nn.Linear(embed_size, vocab_size - 1)

    def forward(self, captions, img_features):
        x = self.embed_tokens(captions)
        x = self.layer(x, img_features)
        x = self.linear(x)
        _, predicted = x.max(dim=-1)
        return x, predicted

    def sample(self, img_features, first_token_value=0):
        fs = img_features.size(0)
        sampled_ids = [torch.full((fs,), first_token_value, dtype=torch.long)]
        logits = []
        for i in range(self.seq_length):
            outputs, _ = self.forward(torch.stack(sampled_ids, 1), img_features)
            outputs = outputs[:, -1]
            logits.append(outputs)
            outputs_prob = F.softmax(outputs, dim=-1)
            _, predicted = outputs_prob.max(1)
            sampled_ids.append(predicted.detach())
        sampled_ids = torch.stack(sampled_ids[1:], 1)
        logits = torch.stack(logits, 1)
        return sampled_ids, logits


class InverseCookingModel(nn.Module):
    def __init__(self, embed_size=64, ingr_vocab_size=30, maxnumlabels=10):
        super().__init__()
        self.image_encoder = nn.Sequential(nn.Conv2d(3, embed_size, 7, stride=4), nn.ReLU(), nn.AdaptiveAvgPool2d(3))
        self.ingredient_decoder = DecoderTransformer(embed_size, ingr_vocab_size, seq_length=maxnumlabels)
        self.crit_ingr = nn.BCELoss(reduction="none")
        self.pad_value = ingr_vocab_size - 1

    def forward(self, img_inputs, target_ingrs):
        img_features = self.image_encoder(img_inputs).flatten(2).transpose(1, 2)
        target_one_hot = label2onehot(target_ingrs, self.pad_value)
        ingr_ids, ingr_logits = self.ingredient_decoder.sample(img_features)
        ingr_logits = F.softmax(ingr_logits, dim=-1)
        ingr_probs, _ = torch.max(ingr_logits, dim=1)
        ingr_loss = torch.mean(self.crit_ingr(ingr_probs, target_one_hot), dim=-1)
        return {"ingr_loss": ingr_loss}


def train(model, data_loader, epochs=1, lr=1e-4):
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    for epoch in range(epochs):
        for img_inputs, ingr_gt in data_loader:
            losses = model(img_inputs, ingr_gt)
            loss = losses["ingr_loss"].mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
