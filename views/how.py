"""How Sprout works, in plain words for a classroom, pointing at the live charts."""

import streamlit as st

from engine.figures.network import network_dot
from engine.nas.architecture import seed_architecture
from views.common import page_button

st.title("How it works")
st.html('<p class="sprout-hero">Sprout does not ask you to design a neural network. It grows one, the way a '
        "gardener grows a plant: start small, try a change, keep what works.</p>")

text, drawing = st.columns([3, 2], gap="large")
with text:
    st.markdown("""
### 1 · Pictures become numbers
Every picture is shrunk to a small square (for example 32×32 dots) and each dot becomes a number for its
brightness. Sprout puts about 15 in every 100 of your pictures aside as a **test set** and never looks at them
while searching, so the final score is honest. Another 15 in 100 are the **validation set**: the search uses them
to compare networks.

### 2 · A small starting network
A *neural network* is a stack of layers. **Convolution** layers slide little pattern detectors (edges, corners,
textures) over the picture; **pooling** layers shrink it so later layers see bigger shapes; **dense** layers at the
end turn what was found into a vote for each class. Sprout starts with a small, ordinary network like the one
drawn here: the picture goes in at the top, and the bottom layer gives one score per class.
""")
with drawing:
    with st.container(border=True, height=560):
        st.caption("The starting network for 32×32 greyscale pictures and 10 classes. Each box is a layer; the "
                   "numbers under it are the size of what it passes on (height × width × channels).")
        st.graphviz_chart(network_dot(seed_architecture((32, 32, 1), 10).to_dict()))

st.markdown("""
### 3 · Grow, don't restart
Training a network from nothing is slow. So Sprout changes a network it has **already trained** in a way that
keeps everything it learnt (a *network morphism*):

- **deeper**: insert a new layer that starts out doing nothing (it passes its input straight through);
- **wider**: give a layer more pattern detectors, copies of existing ones;
- **skip connection**: add a shortcut that lets information jump over some layers, starting switched off.

The new network starts exactly as good as its parent, and a few rounds of training (*epochs*) improve it.
On the **Search** page, every dot in *the tree of networks* is one trained network and every line is one of
these changes: hover a line to read it.

### 4 · Guess before you train
Which change should come next? Sprout measures how different two networks are by counting the changes that
turn one into the other (an *edit distance*: see *How different they are* on the Search page). Networks that
are close usually score alike. A **Gaussian process**, a statistics tool, uses that to predict the accuracy
of networks nobody has trained yet, and how unsure it is (± *sigma*).

### 5 · Be curious, but not too curious
Sprout does not simply pick the network with the best prediction. It adds a bonus for uncertainty
(**UCB** = predicted accuracy + 1.5 × sigma), so sometimes it tries something surprising, because that is where
big improvements hide. Time counts too: of two networks that promise the same improvement over the best one so
far, it trains the one that is quicker to train, so a short search tries more networks. The box *Why this one?*
on the Search page shows this reasoning for the network being trained right now, and *Predictions* shows how
good the guesses turned out.

### 6 · The winner
When the time is up, the best network is trained once more on all its pictures and tested on the test set it has
never seen. You can download it and use it anywhere, or try it right here.

---
**Compare for yourself.** On the Search page, under *How to choose the next network*, pick *Random* or
*Breadth-first* instead of *Smart* and run the same images for the same time: does the smart search find a
better network?
""")
page_button("Start with your images", "data", key="how_to_data", icon=":material/photo_library:")
