//! Typed addresses. Guest-physical and host-physical addresses are different
//! types so that one cannot be passed where the other is meant.

memory_addr::def_usize_addr! {
    /// A guest-physical address: the input of a nested translation.
    pub type GuestPhysAddr;
}

memory_addr::def_usize_addr_formatter! {
    GuestPhysAddr = "GPA:{}";
}

/// A host-physical address: the output of a nested translation.
pub type HostPhysAddr = memory_addr::PhysAddr;
