"""PyTorch's DCGAN tutorial (pytorch/tutorials, BSD license): its weights_init, Generator and Discriminator as printed
there, at 16x16 instead of 64x64 (one layer fewer each), and the generator's step of the training loop: noise up
through nn.ConvTranspose2d, then the discriminator's verdict and BCELoss against the "real" label. Every parameter of
both networks gets its gradient; netD's are what errG.backward() leaves there too."""

import torch
import torch.nn as nn

torch.manual_seed(999)
nc = 1
nz = 8
ngf = 4
ndf = 4


def weights_init(m):
    classname = m.__class__.__name__
    if classname.find('Conv') != -1:
        nn.init.normal_(m.weight.data, 0.0, 0.02)
    elif classname.find('BatchNorm') != -1:
        nn.init.normal_(m.weight.data, 1.0, 0.02)
        nn.init.constant_(m.bias.data, 0)


class Discriminator(nn.Module):
    def __init__(self, ngpu):
        super(Discriminator, self).__init__()
        self.ngpu = ngpu
        self.main = nn.Sequential(
            nn.Conv2d(nc, ndf, 4, 2, 1, bias=False),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf, ndf * 2, 4, 2, 1, bias=False),
            nn.BatchNorm2d(ndf * 2),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf * 2, 1, 4, 1, 0, bias=False),
            nn.Sigmoid()
        )

    def forward(self, input):
        return self.main(input)



class Generator(nn.Module):
    def __init__(self, ngpu):
        super(Generator, self).__init__()
        self.ngpu = ngpu
        self.main = nn.Sequential(
            # input is Z, going into a convolution
            nn.ConvTranspose2d( nz, ngf * 8, 4, 1, 0, bias=False),
            nn.BatchNorm2d(ngf * 8),
            nn.ReLU(True),
            # state size. ``(ngf*8) x 4 x 4``
            nn.ConvTranspose2d(ngf * 8, ngf * 4, 4, 2, 1, bias=False),
            nn.BatchNorm2d(ngf * 4),
            nn.ReLU(True),
            # state size. ``(ngf*4) x 8 x 8``
            nn.ConvTranspose2d( ngf * 4, nc, 4, 2, 1, bias=False),
            nn.Tanh()
            # state size. ``(nc) x 16 x 16``
        )

    def forward(self, input):
        return self.main(input)


netG = Generator(1)
netG.apply(weights_init)
netD = Discriminator(1)
netD.apply(weights_init)
criterion = nn.BCELoss()
noise = torch.randn(2, nz, 1, 1)
fake = netG(noise)
label = torch.full((2,), 1.0)
output = netD(fake).view(-1)
errG = criterion(output, label)
errG.backward()
