"""Recall case torchani_cosine_norm_eps (bug): angular_terms divided the dot product of two neighbor vectors by the product of their norms with no eps."""
# https://github.com/aiqm/torchani/pull/561 -- the hand-written cosine similarity vectors12.prod(0).sum(1) / distances12.prod(0) is 0/0 = NaN when two atoms are superimposed (a zero neighbor vector), which turned energies and forces into NaN during MD and training; the fix clamps the denominator: / torch.clamp(distances12.prod(0), min=1e-10).
import math
from typing import NamedTuple, Optional, Tuple

import torch
from torch import Tensor


class SpeciesAEV(NamedTuple):
    species: Tensor
    aevs: Tensor


class SpeciesEnergies(NamedTuple):
    species: Tensor
    energies: Tensor


def cutoff_cosine(distances: Tensor, cutoff: float) -> Tensor:
    return 0.5 * torch.cos(distances * (math.pi / cutoff)) + 0.5


def radial_terms(Rcr: float, EtaR: Tensor, ShfR: Tensor, distances: Tensor) -> Tensor:
    distances = distances.view(-1, 1, 1)
    fc = cutoff_cosine(distances, Rcr)
    ret = 0.25 * torch.exp(-EtaR * (distances - ShfR) ** 2) * fc
    return ret.flatten(start_dim=1)


def angular_terms(Rca: float, ShfZ: Tensor, EtaA: Tensor, Zeta: Tensor, ShfA: Tensor, vectors12: Tensor) -> Tensor:
    vectors12 = vectors12.view(2, -1, 3, 1, 1, 1, 1)
    distances12 = vectors12.norm(2, dim=-5)
    cos_angles = vectors12.prod(0).sum(1) / distances12.prod(0)
    # 0.95 is multiplied to the cos values to prevent acos from returning NaN.
    angles = torch.acos(0.95 * cos_angles)

    fcj12 = cutoff_cosine(distances12, Rca)
    factor1 = ((1 + torch.cos(angles - ShfZ)) / 2) ** Zeta
    factor2 = torch.exp(-EtaA * (distances12.sum(0) / 2 - ShfA) ** 2)
    ret = 2 * factor1 * factor2 * fcj12.prod(0)
    return ret.flatten(start_dim=1)


def neighbor_pairs_nopbc(padding_mask: Tensor, coordinates: Tensor, cutoff: float) -> Tensor:
    coordinates = coordinates.detach().masked_fill(padding_mask.unsqueeze(-1), math.nan)
    current_device = coordinates.device
    num_atoms = padding_mask.shape[1]
    num_mols = padding_mask.shape[0]
    p12_all = torch.triu_indices(num_atoms, num_atoms, 1, device=current_device)
    p12_all_flattened = p12_all.view(-1)
    pair_coordinates = coordinates.index_select(1, p12_all_flattened).view(num_mols, 2, -1, 3)
    distances = (pair_coordinates[:, 0, ...] - pair_coordinates[:, 1, ...]).norm(2, -1)
    in_cutoff = (distances <= cutoff).nonzero()
    molecule_index, pair_index = in_cutoff.unbind(1)
    molecule_index *= num_atoms
    atom_index12 = p12_all[:, pair_index] + molecule_index
    return atom_index12


def triple_by_molecule(atom_index12: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
    """Input: indices for pairs of atoms that are close to each other; output: the central atom of
    each angular triple and the local pair indices of its two neighbors."""
    ai1 = atom_index12.view(-1)
    sorted_ai1, rev_indices = ai1.sort()
    uniqued_central_atom_index, counts = torch.unique_consecutive(sorted_ai1, return_inverse=False, return_counts=True)
    pair_sizes = counts * (counts - 1) // 2
    pair_indices = torch.repeat_interleave(pair_sizes)
    central_atom_index = uniqued_central_atom_index.index_select(0, pair_indices)
    m = counts.max().item() if counts.numel() > 0 else 0
    n = pair_sizes.shape[0]
    intra_pair_indices = torch.tril_indices(m, m, -1, device=ai1.device).unsqueeze(1).expand(-1, n, -1)
    mask = (torch.arange(intra_pair_indices.shape[2], device=ai1.device) < pair_sizes.unsqueeze(1)).flatten()
    sorted_local_index12 = intra_pair_indices.flatten(1, 2)[:, mask]
    sorted_local_index12 += torch.cumsum(counts, 0).roll(1).masked_fill(torch.arange(counts.numel(), device=ai1.device) == 0, 0).index_select(0, pair_indices)
    local_index12 = rev_indices[sorted_local_index12]
    n = atom_index12.shape[1]
    sign12 = (local_index12 < n).to(torch.int8) * 2 - 1
    return central_atom_index, local_index12 % n, sign12


def compute_aev(species: Tensor, coordinates: Tensor, triu_index: Tensor,
                constants: Tuple[float, Tensor, Tensor, float, Tensor, Tensor, Tensor, Tensor],
                sizes: Tuple[int, int, int, int, int]) -> Tensor:
    Rcr, EtaR, ShfR, Rca, ShfZ, EtaA, Zeta, ShfA = constants
    num_species, radial_sublength, radial_length, angular_sublength, angular_length = sizes
    num_molecules = species.shape[0]
    num_atoms = species.shape[1]
    num_species_pairs = angular_length // angular_sublength
    coordinates_ = coordinates

    atom_index12 = neighbor_pairs_nopbc(species == -1, coordinates_, Rcr)
    coordinates = coordinates_.flatten(0, 1)
    selected_coordinates = coordinates.index_select(0, atom_index12.view(-1)).view(2, -1, 3)
    vec = selected_coordinates[0] - selected_coordinates[1]
    species = species.flatten()
    species12 = species[atom_index12]

    distances = vec.norm(2, -1)
    radial_terms_ = radial_terms(Rcr, EtaR, ShfR, distances)
    radial_aev = radial_terms_.new_zeros((num_molecules * num_atoms * num_species, radial_sublength))
    index12 = atom_index12 * num_species + species12.flip(0)
    radial_aev.index_add_(0, index12[0], radial_terms_)
    radial_aev.index_add_(0, index12[1], radial_terms_)
    radial_aev = radial_aev.reshape(num_molecules, num_atoms, radial_length)

    even_closer_indices = (distances <= Rca).nonzero().flatten()
    atom_index12 = atom_index12.index_select(1, even_closer_indices)
    species12 = species12.index_select(1, even_closer_indices)
    vec = vec.index_select(0, even_closer_indices)

    central_atom_index, pair_index12, sign12 = triple_by_molecule(atom_index12)
    species12_small = species12[:, pair_index12]
    vec12 = vec.index_select(0, pair_index12.view(-1)).view(2, -1, 3) * sign12.unsqueeze(-1)
    species12_ = torch.where(sign12 == 1, species12_small[1], species12_small[0])
    angular_terms_ = angular_terms(Rca, ShfZ, EtaA, Zeta, ShfA, vec12)
    angular_aev = angular_terms_.new_zeros((num_molecules * num_atoms * num_species_pairs, angular_sublength))
    index = central_atom_index * num_species_pairs + triu_index[species12_[0], species12_[1]]
    angular_aev.index_add_(0, index, angular_terms_)
    angular_aev = angular_aev.reshape(num_molecules, num_atoms, angular_length)
    return torch.cat([radial_aev, angular_aev], dim=-1)


class AEVComputer(torch.nn.Module):
    def __init__(self, Rcr, Rca, EtaR, ShfR, EtaA, Zeta, ShfA, ShfZ, num_species):
        super().__init__()
        self.Rcr = Rcr
        self.Rca = Rca
        self.num_species = num_species
        self.register_buffer('EtaR', EtaR.view(-1, 1))
        self.register_buffer('ShfR', ShfR.view(1, -1))
        self.register_buffer('EtaA', EtaA.view(-1, 1, 1, 1))
        self.register_buffer('Zeta', Zeta.view(1, -1, 1, 1))
        self.register_buffer('ShfA', ShfA.view(1, 1, -1, 1))
        self.register_buffer('ShfZ', ShfZ.view(1, 1, 1, -1))
        self.radial_sublength = self.EtaR.numel() * self.ShfR.numel()
        self.radial_length = self.num_species * self.radial_sublength
        self.angular_sublength = self.EtaA.numel() * self.Zeta.numel() * self.ShfA.numel() * self.ShfZ.numel()
        self.angular_length = (self.num_species * (self.num_species + 1)) // 2 * self.angular_sublength
        self.sizes = (self.num_species, self.radial_sublength, self.radial_length, self.angular_sublength, self.angular_length)
        species1, species2 = torch.triu_indices(num_species, num_species).unbind(0)
        pair_index = torch.arange(species1.shape[0], dtype=torch.long)
        triu_index = torch.zeros(num_species, num_species, dtype=torch.long)
        triu_index[species1, species2] = pair_index
        triu_index[species2, species1] = pair_index
        self.register_buffer('triu_index', triu_index)

    def constants(self):
        return self.Rcr, self.EtaR, self.ShfR, self.Rca, self.ShfZ, self.EtaA, self.Zeta, self.ShfA

    def forward(self, input_: Tuple[Tensor, Tensor], cell: Optional[Tensor] = None, pbc: Optional[Tensor] = None) -> SpeciesAEV:
        species, coordinates = input_
        aev = compute_aev(species, coordinates, self.triu_index, self.constants(), self.sizes)
        return SpeciesAEV(species, aev)


class ANIModel(torch.nn.ModuleList):
    def forward(self, species_aev: Tuple[Tensor, Tensor]) -> SpeciesEnergies:
        species, aev = species_aev
        species_ = species.flatten()
        aev = aev.flatten(0, 1)
        output = aev.new_zeros(species_.shape)
        for i, m in enumerate(self):
            mask = (species_ == i)
            midx = mask.nonzero().flatten()
            if midx.shape[0] > 0:
                input_ = aev.index_select(0, midx)
                output.masked_scatter_(mask, m(input_).flatten())
        output = output.view_as(species)
        return SpeciesEnergies(species, torch.sum(output, dim=1))


class Sequential(torch.nn.ModuleList):
    def __init__(self, *modules):
        super().__init__(modules)

    def forward(self, input_: Tuple[Tensor, Tensor]):
        for module in self:
            input_ = module(input_)
        return input_


def atomic_net(aev_dim):
    return torch.nn.Sequential(
        torch.nn.Linear(aev_dim, 160), torch.nn.CELU(0.1),
        torch.nn.Linear(160, 128), torch.nn.CELU(0.1),
        torch.nn.Linear(128, 96), torch.nn.CELU(0.1),
        torch.nn.Linear(96, 1),
    )


def train(training, consts, device, max_epochs=200, force_coefficient=0.1):
    """examples/nnp_training_force.py: energies and forces, forces by autograd w.r.t. the coordinates."""
    aev_computer = AEVComputer(**consts)
    nn = ANIModel([atomic_net(aev_computer.radial_length + aev_computer.angular_length) for _ in range(4)])
    model = Sequential(aev_computer, nn).to(device)
    mse = torch.nn.MSELoss(reduction='none')
    optimizer = torch.optim.AdamW(nn.parameters(), lr=1e-3)
    for _ in range(max_epochs):
        for properties in training:
            species = properties['species'].to(device)
            coordinates = properties['coordinates'].to(device).float().requires_grad_(True)
            true_energies = properties['energies'].to(device).float()
            true_forces = properties['forces'].to(device).float()
            num_atoms = (species >= 0).sum(dim=1, dtype=true_energies.dtype)
            _, predicted_energies = model((species, coordinates))
            forces = -torch.autograd.grad(predicted_energies.sum(), coordinates, create_graph=True, retain_graph=True)[0]
            energy_loss = (mse(predicted_energies, true_energies) / num_atoms.sqrt()).mean()
            force_loss = (mse(true_forces, forces).sum(dim=(1, 2)) / num_atoms).mean()
            loss = energy_loss + force_coefficient * force_loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
