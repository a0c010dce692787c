"""Recall case yolov4_head_sigmoid_bcelogits (fixed): the head keeps raw conf/class logits for the loss; sigmoid at evaluation."""
# https://github.com/argusswift/YOLOv4-pytorch/issues/89 -- yolo_head applied sigmoid to confidence and class outputs, and the loss applied it again.
import torch
import torch.nn as nn


class Yolo_head(nn.Module):
    def __init__(self, nC, stride):
        super().__init__()
        self.nC = nC
        self.stride = stride

    def forward(self, p):
        bs, nG = p.shape[0], p.shape[-1]
        p = p.view(bs, 3, 5 + self.nC, nG, nG).permute(0, 3, 4, 1, 2)
        conv_raw_dxdy, conv_raw_dwdh = p[..., 0:2], p[..., 2:4]
        pred_xy = torch.sigmoid(conv_raw_dxdy) * self.stride
        pred_wh = torch.exp(conv_raw_dwdh) * self.stride
        pred_conf = p[..., 4:5]
        pred_prob = p[..., 5:]
        return torch.cat([pred_xy, pred_wh, pred_conf, pred_prob], dim=-1)


class YoloV4Loss(nn.Module):
    def __init__(self):
        super().__init__()
        self.bce = nn.BCEWithLogitsLoss(reduction="none")

    def forward(self, p_d, label):
        label_obj_mask = label[..., 4:5]
        loss_conf = label_obj_mask * self.bce(input=p_d[..., 4:5], target=label_obj_mask)
        loss_cls = label_obj_mask * self.bce(input=p_d[..., 5:], target=label[..., 5:])
        return (loss_conf.sum() + loss_cls.sum()) / p_d.shape[0]


def train_step(backbone, head, criterion, optimizer, imgs, labels):
    p_d = head(backbone(imgs))
    loss = criterion(p_d, labels)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
