"""Recall case coca_vit_extractor_detach (bug): CoCa's image encoder was vit_pytorch's Extractor, whose forward hook stored output.clone().detach()."""
# https://github.com/lucidrains/CoCa-pytorch/issues/6 -- Extractor's hook saved the transformer output cloned and detached and forward() returned those latents, so the caption and contrastive losses never reached the ViT; vit-pytorch 0.35.8 added Extractor(detach=...) and CoCa's usage passes detach=False.
import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from torch import einsum, nn


def exists(val):
    return val is not None


def default(val, d):
    return val if exists(val) else d


def apply_tuple_or_single(fn, val):
    if isinstance(val, tuple):
        return tuple(map(fn, val))
    return fn(val)


# ---- vit_pytorch/vit.py (trimmed) -------------------------------------------------------------

class FeedForward(nn.Module):
    def __init__(self, dim, hidden_dim):
        super().__init__()
        self.net = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, hidden_dim), nn.GELU(), nn.Linear(hidden_dim, dim))

    def forward(self, x):
        return self.net(x)


class Attention(nn.Module):
    def __init__(self, dim, heads=8, dim_head=64):
        super().__init__()
        inner_dim = dim_head * heads
        self.heads = heads
        self.scale = dim_head ** -0.5
        self.norm = nn.LayerNorm(dim)
        self.to_qkv = nn.Linear(dim, inner_dim * 3, bias=False)
        self.to_out = nn.Linear(inner_dim, dim)

    def forward(self, x):
        x = self.norm(x)
        qkv = self.to_qkv(x).chunk(3, dim=-1)
        q, k, v = map(lambda t: rearrange(t, "b n (h d) -> b h n d", h=self.heads), qkv)
        dots = torch.matmul(q, k.transpose(-1, -2)) * self.scale
        attn = dots.softmax(dim=-1)
        out = torch.matmul(attn, v)
        return self.to_out(rearrange(out, "b h n d -> b n (h d)"))


class Transformer(nn.Module):
    def __init__(self, dim, depth, heads, dim_head, mlp_dim):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.layers = nn.ModuleList([])
        for _ in range(depth):
            self.layers.append(nn.ModuleList([Attention(dim, heads=heads, dim_head=dim_head), FeedForward(dim, mlp_dim)]))

    def forward(self, x):
        for attn, ff in self.layers:
            x = attn(x) + x
            x = ff(x) + x
        return self.norm(x)


class ViT(nn.Module):
    def __init__(self, *, image_size, patch_size, num_classes, dim, depth, heads, mlp_dim, channels=3, dim_head=64):
        super().__init__()
        num_patches = (image_size // patch_size) ** 2
        patch_dim = channels * patch_size * patch_size
        self.patch_size = patch_size
        self.to_patch_embedding = nn.Sequential(nn.LayerNorm(patch_dim), nn.Linear(patch_dim, dim), nn.LayerNorm(dim))
        self.pos_embedding = nn.Parameter(torch.randn(1, num_patches + 1, dim))
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim))
        self.transformer = Transformer(dim, depth, heads, dim_head, mlp_dim)
        self.mlp_head = nn.Linear(dim, num_classes)

    def forward(self, img):
        x = rearrange(img, "b c (h p1) (w p2) -> b (h w) (p1 p2 c)", p1=self.patch_size, p2=self.patch_size)
        x = self.to_patch_embedding(x)
        cls_tokens = repeat(self.cls_token, "1 1 d -> b 1 d", b=x.shape[0])
        x = torch.cat((cls_tokens, x), dim=1)
        x = x + self.pos_embedding[:, : x.shape[1]]
        x = self.transformer(x)
        return self.mlp_head(x[:, 0])


# ---- vit_pytorch/extractor.py ------------------------------------------------------------------

class Extractor(nn.Module):
    def __init__(self, vit, device=None, layer_name="transformer", layer_save_input=False, return_embeddings_only=False):
        super().__init__()
        self.vit = vit
        self.data = None
        self.latents = None
        self.hooks = []
        self.hook_registered = False
        self.ejected = False
        self.device = device
        self.layer_name = layer_name
        self.layer_save_input = layer_save_input
        self.return_embeddings_only = return_embeddings_only

    def _hook(self, _, inputs, output):
        tensor_to_save = inputs if self.layer_save_input else output
        self.latents = apply_tuple_or_single(lambda t: t.clone().detach(), tensor_to_save)

    def _register_hook(self):
        assert hasattr(self.vit, self.layer_name), "layer whose output to take as embedding not found in vision transformer"
        layer = getattr(self.vit, self.layer_name)
        handle = layer.register_forward_hook(self._hook)
        self.hooks.append(handle)
        self.hook_registered = True

    def eject(self):
        self.ejected = True
        for hook in self.hooks:
            hook.remove()
        self.hooks.clear()
        return self.vit

    def clear(self):
        del self.latents
        self.latents = None

    def forward(self, img, return_embeddings_only=False):
        assert not self.ejected, "extractor has been ejected, cannot be used anymore"
        self.clear()
        if not self.hook_registered:
            self._register_hook()

        pred = self.vit(img)

        target_device = self.device if exists(self.device) else img.device
        latents = apply_tuple_or_single(lambda t: t.to(target_device), self.latents)

        if return_embeddings_only or self.return_embeddings_only:
            return latents

        return pred, latents


# ---- coca_pytorch/coca_pytorch.py (trimmed) ----------------------------------------------------

class LayerNorm(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(dim))
        self.register_buffer("beta", torch.zeros(dim))

    def forward(self, x):
        return F.layer_norm(x, x.shape[-1:], self.gamma, self.beta)


class Residual(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x, *args, **kwargs):
        return self.fn(x, *args, **kwargs) + x


class EmbedToLatents(nn.Module):
    def __init__(self, dim, dim_latents):
        super().__init__()
        self.to_latents = nn.Linear(dim, dim_latents, bias=False)

    def forward(self, x):
        return F.normalize(self.to_latents(x), dim=-1)


class CrossAttention(nn.Module):
    def __init__(self, dim, *, context_dim=None, dim_head=64, heads=8, norm_context=False):
        super().__init__()
        self.heads = heads
        self.scale = dim_head ** -0.5
        inner_dim = heads * dim_head
        context_dim = default(context_dim, dim)
        self.norm = LayerNorm(dim)
        self.context_norm = LayerNorm(context_dim) if norm_context else nn.Identity()
        self.to_q = nn.Linear(dim, inner_dim, bias=False)
        self.to_kv = nn.Linear(context_dim, dim_head * 2, bias=False)
        self.to_out = nn.Linear(inner_dim, dim, bias=False)

    def forward(self, x, context):
        x = self.norm(x)
        context = self.context_norm(context)
        q = rearrange(self.to_q(x), "b n (h d) -> b h n d", h=self.heads) * self.scale
        k, v = self.to_kv(context).chunk(2, dim=-1)
        sim = einsum("b h i d, b j d -> b h i j", q, k)
        sim = sim - sim.amax(dim=-1, keepdim=True)
        attn = sim.softmax(dim=-1)
        out = einsum("b h i j, b j d -> b h i d", attn, v)
        return self.to_out(rearrange(out, "b h n d -> b n (h d)"))


class CoCa(nn.Module):
    def __init__(self, *, dim, num_tokens, multimodal_depth, image_dim=None, num_img_queries=256,
                 dim_head=64, heads=8, img_encoder=None, caption_loss_weight=1., contrastive_loss_weight=1., pad_id=0):
        super().__init__()
        self.dim = dim
        self.pad_id = pad_id
        self.caption_loss_weight = caption_loss_weight
        self.contrastive_loss_weight = contrastive_loss_weight
        self.token_emb = nn.Embedding(num_tokens, dim)
        self.text_cls_token = nn.Parameter(torch.randn(dim))
        self.img_encoder = img_encoder
        self.img_queries = nn.Parameter(torch.randn(num_img_queries + 1, dim))
        self.img_attn_pool = CrossAttention(dim=dim, context_dim=image_dim, dim_head=dim_head, heads=heads, norm_context=True)
        self.img_attn_pool_norm = LayerNorm(dim)
        self.text_cls_norm = LayerNorm(dim)
        self.img_to_latents = EmbedToLatents(dim, dim)
        self.text_to_latents = EmbedToLatents(dim, dim)
        self.temperature = nn.Parameter(torch.Tensor([1.]))
        self.multimodal_layers = nn.ModuleList([
            Residual(CrossAttention(dim=dim, dim_head=dim_head, heads=heads)) for _ in range(multimodal_depth)
        ])
        self.to_logits = nn.Sequential(LayerNorm(dim), nn.Linear(dim, num_tokens, bias=False))
        self.to_logits[-1].weight = self.token_emb.weight
        nn.init.normal_(self.token_emb.weight, std=0.02)

    def embed_text(self, text):
        batch = text.shape[0]
        text_tokens = self.token_emb(text)
        text_cls_tokens = repeat(self.text_cls_token, "d -> b 1 d", b=batch)
        text_tokens = torch.cat((text_tokens, text_cls_tokens), dim=-2)
        text_tokens, text_cls_tokens = text_tokens[:, :-1], text_tokens[:, -1]
        return self.text_cls_norm(text_cls_tokens), text_tokens

    def embed_image(self, images=None, image_tokens=None):
        if exists(images):
            assert exists(self.img_encoder), "img_encoder must be passed in for automatic image encoding"
            image_tokens = self.img_encoder(images)
        img_queries = repeat(self.img_queries, "n d -> b n d", b=image_tokens.shape[0])
        img_queries = self.img_attn_pool(img_queries, image_tokens)
        img_queries = self.img_attn_pool_norm(img_queries)
        return img_queries[:, 0], img_queries[:, 1:]

    def forward(self, text, images=None, image_tokens=None, labels=None, return_loss=False):
        batch, device = text.shape[0], text.device
        if return_loss and not exists(labels):
            text, labels = text[:, :-1], text[:, 1:]

        text_embeds, text_tokens = self.embed_text(text)
        image_embeds, image_tokens = self.embed_image(images=images, image_tokens=image_tokens)

        for cross_attn in self.multimodal_layers:
            text_tokens = cross_attn(text_tokens, image_tokens)

        logits = self.to_logits(text_tokens)
        if not return_loss:
            return logits

        ce = F.cross_entropy
        logits = rearrange(logits, "b n c -> b c n")
        caption_loss = ce(logits, labels, ignore_index=self.pad_id) * self.caption_loss_weight

        text_latents = self.text_to_latents(text_embeds)
        image_latents = self.img_to_latents(image_embeds)
        sim = einsum("i d, j d -> i j", text_latents, image_latents)
        sim = sim * self.temperature.exp()
        contrastive_labels = torch.arange(batch, device=device)
        contrastive_loss = (ce(sim, contrastive_labels) + ce(sim.t(), contrastive_labels)) * 0.5
        contrastive_loss = contrastive_loss * self.contrastive_loss_weight
        return caption_loss + contrastive_loss


# ---- README usage --------------------------------------------------------------------------------

def train(loader, steps=1000):
    vit = ViT(image_size=256, patch_size=32, num_classes=1000, dim=1024, depth=6, heads=16, mlp_dim=2048)
    vit = Extractor(vit, return_embeddings_only=True)

    coca = CoCa(dim=512, img_encoder=vit, image_dim=1024, num_tokens=20000, multimodal_depth=6,
                dim_head=64, heads=8, caption_loss_weight=1., contrastive_loss_weight=1.)
    optimizer = torch.optim.AdamW(coca.parameters(), lr=3e-4)

    for step, (text, images) in zip(range(steps), loader):
        loss = coca(text=text, images=images, return_loss=True)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
