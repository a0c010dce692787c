"""Recall case deepcage_mvc_weights_detach (bug): deform_with_MVC detached the mean-value-coordinate weights that NetworkFull.forward returns."""
# https://github.com/yifita/deep_cage/issues/16 -- common.deform_with_MVC had `weights = weights.detach()`, so the cage predicted by nc_decoder got no gradient through the MVC weights and the WREG loss on all_outputs["weight"] (mvc_weight * MVCRegularizer) trained nothing; the author commented the line out.
import torch
import torch.nn as nn
import torch.nn.functional as F
from pytorch_points.network.geo_operations import mean_value_coordinates_3D
from pytorch_points.network.layers import Conv1d, Linear


def deform_with_MVC(cage, cage_deformed, cage_face, query, verbose=False):
    """
    cage (B,C,3)
    cage_deformed (B,C,3)
    cage_face (B,F,3) int64
    query (B,Q,3)
    """
    weights, weights_unnormed = mean_value_coordinates_3D(query, cage, cage_face, verbose=True)
    weights = weights.detach()
    deformed = torch.sum(weights.unsqueeze(-1) * cage_deformed.unsqueeze(1), dim=2)
    if verbose:
        return deformed, weights, weights_unnormed
    return deformed


class PointNetfeat(nn.Module):
    def __init__(self, dim=3, num_points=2500, bottleneck_size=512, activation="relu", normalization=None):
        super().__init__()
        self.conv1 = Conv1d(dim, 64, 1, activation=activation, normalization=normalization)
        self.conv2 = Conv1d(64, 128, 1, activation=activation, normalization=normalization)
        self.conv3 = Conv1d(128, bottleneck_size, 1, activation=None, normalization=normalization)

    def forward(self, x):
        x = self.conv1(x)
        x = self.conv2(x)
        x = self.conv3(x)
        x, _ = torch.max(x, dim=2)
        return x


class MLPDeformer(nn.Module):
    def __init__(self, dim, bottleneck_size, npoint, residual=True, normalization=None):
        super().__init__()
        self.npoint = npoint
        self.dim = dim
        self.residual = residual
        self.layers = nn.Sequential(
            Linear(bottleneck_size, 512, activation="lrelu", normalization=normalization),
            Linear(512, 256, activation="lrelu", normalization=normalization),
            Linear(256, npoint * dim),
        )

    def forward(self, code, template):
        B, C, N = template.shape
        if code.ndim > 2:
            code = code.view(B, -1)
        x = self.layers(code)
        x = x.reshape(B, C, N)
        if self.residual:
            x += template
        return x


class NetworkFull(nn.Module):
    def __init__(self, opt, dim, bottleneck_size, template_vertices, template_faces):
        super().__init__()
        self.opt = opt
        self.dim = dim
        self.register_buffer("template_faces", template_faces)
        self.template_vertices = nn.Parameter(template_vertices, requires_grad=opt.optimize_template)
        self.encoder = nn.Sequential(
            PointNetfeat(dim=dim, num_points=opt.num_point, bottleneck_size=bottleneck_size),
            Linear(bottleneck_size, bottleneck_size, activation="lrelu", normalization=opt.normalization),
        )
        self.nc_decoder = MLPDeformer(dim=dim, bottleneck_size=bottleneck_size, npoint=self.template_vertices.shape[-1],
                                      residual=opt.c_residual, normalization=opt.normalization)
        self.merger = nn.Sequential(
            Conv1d(bottleneck_size * 2, bottleneck_size * 2, 1, activation="lrelu", normalization=opt.normalization),
        )
        self.nd_decoder = MLPDeformer(dim=dim, bottleneck_size=bottleneck_size * 2, npoint=self.template_vertices.shape[-1],
                                      residual=opt.d_residual, normalization=opt.normalization)

    def forward(self, source_shape, target_shape):
        B, _, N = source_shape.shape
        input_shapes = torch.cat([source_shape, target_shape], dim=0)
        shape_code = self.encoder(input_shapes)
        shape_code.unsqueeze_(-1)
        s_code, t_code = torch.split(shape_code, B, dim=0)

        cage = self.template_vertices.view(1, self.dim, -1).expand(B, -1, -1)
        cage = self.nc_decoder(s_code, cage)

        target_code = torch.cat([s_code, t_code], dim=1)
        target_code = self.merger(target_code)
        new_cage = self.nd_decoder(target_code, cage)

        cage = cage.transpose(1, 2).contiguous()
        new_cage = new_cage.transpose(1, 2).contiguous()
        deformed_shapes, weights, weights_unnormed = deform_with_MVC(
            cage, new_cage, self.template_faces.expand(B, -1, -1), source_shape.transpose(1, 2).contiguous(), verbose=True)

        return {
            "cage": cage,
            "new_cage": new_cage,
            "deformed": deformed_shapes,
            "cage_face": self.template_faces,
            "weight": weights,
            "weight_unnormed": weights_unnormed,
        }


class MVCRegularizer(nn.Module):
    """
    penalize MVC with large absolute value and negative values
    alpha * large_weight^2 + beta * (negative_weight)^2
    """

    def __init__(self, alpha=1.0, beta=1.0, threshold=5.0):
        super().__init__()
        self.alpha = alpha
        self.beta = beta
        self.threshold = threshold

    def forward(self, weights):
        loss = 0
        if self.alpha > 0:
            large_loss = torch.log(torch.nn.functional.relu(weights.abs() - self.threshold) + 1)
            loss += torch.mean(large_loss) * self.alpha
        if self.beta > 0:
            neg_loss = torch.nn.functional.relu(-weights)
            neg_loss = neg_loss ** 2
            loss += torch.mean(neg_loss) * self.beta
        return loss


class AllLosses(nn.Module):
    def __init__(self, opt):
        super().__init__()
        self.opt = opt
        self.mvc_reg_loss = MVCRegularizer(threshold=50, beta=1.0, alpha=0.0)

    def forward(self, all_inputs, all_outputs):
        loss = {}
        dist = torch.sum((all_outputs["deformed"] - all_inputs["target_shape"]) ** 2, dim=-1)
        loss["MSE"] = (dist.mean() + torch.max(dist, dim=1)[0].mean()) * self.opt.loss_weight
        # ======== penalize large unnormalized weight and/or negative weights ========== #
        if self.opt.mvc_weight > 0:
            loss["WREG"] = self.mvc_reg_loss(all_outputs["weight"]) * self.opt.mvc_weight
        return loss


def train(opt, dataloader, template_vertices, template_faces):
    net = NetworkFull(opt, dim=3, bottleneck_size=opt.bottleneck_size,
                      template_vertices=template_vertices, template_faces=template_faces).cuda()
    all_losses = AllLosses(opt)
    optimizer = torch.optim.Adam([{"params": net.nc_decoder.parameters()},
                                  {"params": net.encoder.parameters()},
                                  {"params": net.nd_decoder.parameters()},
                                  {"params": net.merger.parameters()}], lr=opt.lr)
    for epoch in range(opt.nepochs):
        for data in dataloader:
            source_shape = data["source_shape"].cuda()
            target_shape = data["target_shape"].cuda()
            outputs = net(source_shape.transpose(1, 2), target_shape.transpose(1, 2))
            current_loss = all_losses({"source_shape": source_shape, "target_shape": target_shape}, outputs)
            loss_sum = torch.sum(torch.stack([v for v in current_loss.values()], dim=0))
            optimizer.zero_grad()
            loss_sum.backward()
            optimizer.step()
