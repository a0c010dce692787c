"""Recall case nad_at_loss_detach (fixed): only the teacher activations are detached; the AT terms train the student."""
# https://github.com/bboylyg/NAD/issues/8 -- at1/at2/at3_loss were criterionAT(activation_s, activation_t).detach() * beta, so the attention-distillation terms of at_loss carried no gradient and only cls_loss trained the student; the author moved .detach() onto the teacher activations.
import torch
import torch.nn as nn
import torch.nn.functional as F

from config import get_arguments
from data_loader import get_test_loader, get_train_loader
from models.selector import select_model
from utils.util import AverageMeter, accuracy, adjust_learning_rate, save_checkpoint


class AT(nn.Module):
    '''
    Paying More Attention to Attention: Improving the Performance of Convolutional
    Neural Netkworks wia Attention Transfer
    https://arxiv.org/pdf/1612.03928.pdf
    '''

    def __init__(self, p):
        super(AT, self).__init__()
        self.p = p

    def forward(self, fm_s, fm_t):
        loss = F.mse_loss(self.attention_map(fm_s), self.attention_map(fm_t))
        return loss

    def attention_map(self, fm, eps=1e-6):
        am = torch.pow(torch.abs(fm), self.p)
        am = torch.sum(am, dim=1, keepdim=True)
        norm = torch.norm(am, dim=(2, 3), keepdim=True)
        am = torch.div(am, norm + eps)
        return am


def train_step(opt, train_loader, nets, optimizer, criterions, epoch):
    at_losses = AverageMeter()
    top1 = AverageMeter()
    top5 = AverageMeter()

    snet = nets['snet']
    tnet = nets['tnet']

    criterionCls = criterions['criterionCls']
    criterionAT = criterions['criterionAT']

    snet.train()

    for idx, (img, target) in enumerate(train_loader, start=1):
        if opt.cuda:
            img = img.cuda()
            target = target.cuda()

        activation1_s, activation2_s, activation3_s, output_s = snet(img)
        activation1_t, activation2_t, activation3_t, _ = tnet(img)

        cls_loss = criterionCls(output_s, target)
        at3_loss = criterionAT(activation3_s, activation3_t.detach()) * opt.beta3
        at2_loss = criterionAT(activation2_s, activation2_t.detach()) * opt.beta2
        at1_loss = criterionAT(activation1_s, activation1_t.detach()) * opt.beta1
        at_loss = at1_loss + at2_loss + at3_loss + cls_loss

        prec1, prec5 = accuracy(output_s, target, topk=(1, 5))
        at_losses.update(at_loss.item(), img.size(0))
        top1.update(prec1.item(), img.size(0))
        top5.update(prec5.item(), img.size(0))

        optimizer.zero_grad()
        at_loss.backward()
        optimizer.step()

        if idx % opt.print_freq == 0:
            print('Epoch[{0}]:[{1:03}/{2:03}] '
                  'AT_loss:{losses.val:.4f}({losses.avg:.4f})  '
                  'prec@1:{top1.val:.2f}({top1.avg:.2f})  '
                  'prec@5:{top5.val:.2f}({top5.avg:.2f})'.format(epoch, idx, len(train_loader), losses=at_losses, top1=top1, top5=top5))


def train(opt):
    teacher = select_model(dataset=opt.data_name, model_name=opt.t_name, pretrained=True,
                           pretrained_models_path=opt.t_model, n_classes=opt.num_class).to(opt.device)
    student = select_model(dataset=opt.data_name, model_name=opt.s_name, pretrained=True,
                           pretrained_models_path=opt.s_model, n_classes=opt.num_class).to(opt.device)
    teacher.eval()
    nets = {'snet': student, 'tnet': teacher}
    for param in teacher.parameters():
        param.requires_grad = False

    optimizer = torch.optim.SGD(student.parameters(), lr=opt.lr, momentum=opt.momentum,
                                weight_decay=opt.weight_decay, nesterov=True)
    criterionCls = nn.CrossEntropyLoss()
    criterionAT = AT(opt.p)

    train_loader = get_train_loader(opt)
    test_clean_loader, test_bad_loader = get_test_loader(opt)

    for epoch in range(0, opt.epochs):
        adjust_learning_rate(optimizer, epoch, opt.lr)
        criterions = {'criterionCls': criterionCls, 'criterionAT': criterionAT}
        train_step(opt, train_loader, nets, optimizer, criterions, epoch + 1)
        if opt.save:
            save_checkpoint({'epoch': epoch, 'state_dict': student.state_dict()}, False, opt.checkpoint_root, opt.s_name)


def main():
    opt = get_arguments().parse_args()
    train(opt)


if __name__ == '__main__':
    main()
