import { boot } from './app.js';

boot();
